"""Preflight issues and the catalogue of every rule that can raise one.

Each rule has a stable ``code`` (the seven codes of OpenAI's chat data-prep cookbook keep the
cookbook's names), a severity and a standard way to fix it. ``RULES`` is the single list that
docs/preflight.md documents and the tests check against.

Example:
    >>> from finetune_kit.data.issues import RULES, Issue
    >>> RULES["invalid_weight"].severity
    'error'
    >>> issue = Issue(
    ...     "invalid_weight", "error", 3, "messages[2].weight", "weight is 2", "use 0 or 1"
    ... )
    >>> issue.location
    'line 3, messages[2].weight'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RULES", "FileRole", "Issue", "Rule", "RuleScope", "Severity", "make_issue"]

Severity = Literal["error", "warning", "info"]
"""``error``: the API would refuse the file or training would go wrong; ``warning``: likely a
mistake, worth a look; ``info``: worth knowing."""

FileRole = Literal["training", "validation"]
RuleScope = Literal["file", "example", "dataset", "model"]


@dataclass(frozen=True)
class Issue:
    """One problem preflight found.

    Attributes:
        code: The rule's code, e.g. ``invalid_weight`` (see ``RULES``).
        severity: ``"error"``, ``"warning"`` or ``"info"``.
        line: The 1-based line (or example number, for records not read from a file), or
            ``None`` for a problem with the whole file or dataset.
        field: Where in the example, as a path such as ``messages[2].weight``; ``None`` for the
            whole line.
        message: What is wrong, with the values involved.
        fix: How to fix it.
        file: ``"training"`` or ``"validation"``.

    Example:
        >>> issue = Issue("missing_content", "error", 7, "messages[1].content", "empty", "add it")
        >>> print(issue)
        error missing_content at training:7 messages[1].content: empty (fix: add it)
    """

    code: str
    severity: Severity
    line: int | None
    field: str | None
    message: str
    fix: str
    file: FileRole = "training"

    @property
    def location(self) -> str:
        """Where the issue is, in words: ``line 3, messages[2].weight``."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.field:
            parts.append(self.field)
        return ", ".join(parts) or f"the {self.file} file"

    def to_dict(self) -> dict[str, Any]:
        """Return the issue as a JSON-ready dict."""
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        if self.field:
            where += f" {self.field}"
        return f"{self.severity} {self.code} at {where}: {self.message} (fix: {self.fix})"


@dataclass(frozen=True)
class Rule:
    """One preflight rule.

    Attributes:
        code: Its stable code.
        severity: The severity of the issues it raises.
        scope: What it looks at: a ``file`` (bytes, lines), an ``example``, the whole
            ``dataset``, or the ``model``.
        summary: What it checks, in one line.
        fix: The standard fix.
        origin: ``"cookbook"`` for the seven checks of OpenAI's data-prep notebook,
            ``"finetune_kit"`` for the rest.
    """

    code: str
    severity: Severity
    scope: RuleScope
    summary: str
    fix: str
    origin: Literal["cookbook", "finetune_kit"] = "finetune_kit"


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.code: rule for rule in rules}


RULES: dict[str, Rule] = _rules(
    # --- the file itself ---
    Rule(
        "empty_file",
        "error",
        "file",
        "the file has no examples at all",
        "write one JSON object per line",
    ),
    Rule(
        "invalid_utf8",
        "error",
        "file",
        "a line is not valid UTF-8 (the byte offset is given)",
        "save the file as UTF-8",
    ),
    Rule(
        "invalid_json",
        "error",
        "file",
        "a line is not valid JSON (column and byte offset given)",
        "put exactly one complete JSON object on each line",
    ),
    Rule(
        "top_level_array",
        "error",
        "file",
        "the file, or a line, is a JSON array instead of one object per line",
        "write one JSON object per line (JSONL), e.g. `jq -c '.[]' data.json > data.jsonl`",
    ),
    Rule(
        "blank_line",
        "warning",
        "file",
        "a blank line between examples",
        "remove blank lines (autofix does)",
    ),
    Rule(
        "byte_order_mark",
        "warning",
        "file",
        "the file starts with a UTF-8 byte-order mark (Azure accepts it, OpenAI may not)",
        "save as UTF-8 without BOM (autofix does)",
    ),
    Rule(
        "crlf_line_endings",
        "warning",
        "file",
        "lines end with CRLF (Windows) instead of LF",
        "save with LF line endings (autofix does)",
    ),
    Rule(
        "file_too_large_for_files_api",
        "warning",
        "file",
        "over 512 MB: too large for a single /files upload",
        "upload through the Uploads API in parts (FileUploader does this automatically)",
    ),
    Rule(
        "file_too_large",
        "error",
        "file",
        "over 8 GB: too large even for the Uploads API",
        "split the data or sample it down",
    ),
    # --- the seven checks of the cookbook ---
    Rule(
        "data_type",
        "error",
        "example",
        "the line is not a JSON object",
        'make every line one JSON object such as {"messages": [...]}',
        "cookbook",
    ),
    Rule(
        "missing_messages_list",
        "error",
        "example",
        "no `messages` list, or an empty one",
        'add a non-empty "messages" list',
        "cookbook",
    ),
    Rule(
        "message_missing_key",
        "error",
        "example",
        "a message lacks `role`, or `content` (or a tool message its `tool_call_id`)",
        "add the missing key",
        "cookbook",
    ),
    Rule(
        "message_unrecognized_key",
        "error",
        "example",
        "a message has a key its role does not allow",
        "remove the key, or fix its spelling",
        "cookbook",
    ),
    Rule(
        "unrecognized_role",
        "error",
        "example",
        "a role other than system, developer, user, assistant, tool or function",
        "use one of the known roles",
        "cookbook",
    ),
    Rule(
        "missing_content",
        "error",
        "example",
        "content is missing, empty, null without tool calls, or not a string or list of parts",
        "give the message text content (a string or a list of content parts)",
        "cookbook",
    ),
    Rule(
        "example_missing_assistant_message",
        "error",
        "example",
        "a chat example has no assistant message to train on",
        "add the assistant reply the model should learn",
        "cookbook",
    ),
    # --- messages and content, beyond the cookbook ---
    Rule(
        "message_data_type",
        "error",
        "example",
        "a message is not a JSON object",
        "make every message an object with role and content",
    ),
    Rule(
        "role_not_allowed",
        "error",
        "example",
        "a role the method does not accept (system or function in reinforcement data)",
        "use developer instead of system for reinforcement fine-tuning",
    ),
    Rule(
        "empty_content",
        "warning",
        "example",
        "content that is only whitespace",
        "write the text, or drop the message",
    ),
    Rule(
        "invalid_content_part",
        "error",
        "example",
        "a content part that is not {type: text, text} or {type: image_url, image_url: {url}}",
        "fix the part's type and fields",
    ),
    Rule(
        "invalid_name",
        "error",
        "example",
        "a `name` that is not 1-64 letters, digits, _ or -",
        "use a short identifier as name",
    ),
    Rule(
        "weight_on_non_assistant",
        "error",
        "example",
        "`weight` on a message that is not from the assistant",
        "remove weight: only assistant messages take it",
    ),
    Rule(
        "invalid_weight",
        "error",
        "example",
        "`weight` other than the integers 0 or 1",
        "use 0 (do not train on this turn) or 1 (train on it)",
    ),
    Rule(
        "no_trainable_assistant_message",
        "error",
        "example",
        "every assistant message has weight 0, so the example trains nothing",
        "set weight 1 on at least one assistant message, or drop the example",
    ),
    Rule(
        "role_order",
        "warning",
        "example",
        "roles in an unusual order (system after the conversation started, "
        "an assistant speaking first, a DPO input not ending with the user)",
        "put system/developer messages first, then alternate user and assistant",
    ),
    Rule(
        "last_message_not_assistant",
        "warning",
        "example",
        "a supervised example ends after its last assistant message; the tail is never trained",
        "end the example with the assistant reply, or drop the trailing messages",
    ),
    Rule(
        "lone_surrogate",
        "error",
        "example",
        "text holds half of a UTF-16 surrogate pair (a `\\ud800` escape without its pair): not "
        "a character, so it cannot be encoded as UTF-8 or tokenized",
        "remove the escape, or write the whole character (the pair, such as "
        "`\\ud83d\\ude00`, or the character itself)",
    ),
    Rule(
        "special_token_in_text",
        "warning",
        "example",
        "text contains a special token such as `<|endoftext|>`",
        "remove or rewrite special-token markers; they are not plain text to every tokenizer",
    ),
    # --- tools ---
    Rule(
        "invalid_tools",
        "error",
        "example",
        "`tools` is not a list of {type: function, function: {name, parameters?}}",
        "declare tools as the chat completions API does",
    ),
    Rule(
        "invalid_parallel_tool_calls",
        "error",
        "example",
        "`parallel_tool_calls` is not a boolean",
        "use true or false",
    ),
    Rule(
        "parallel_tool_calls_conflict",
        "error",
        "example",
        "several tool calls in one message while parallel_tool_calls is false",
        "split the calls over several assistant messages, or set parallel_tool_calls true",
    ),
    Rule(
        "invalid_tool_calls",
        "error",
        "example",
        "`tool_calls` is not a list of {id, type: function, function: {name, arguments}}",
        "write tool calls as the chat completions API returns them",
    ),
    Rule(
        "tool_arguments_not_string",
        "error",
        "example",
        "a tool call's `arguments` is an object rather than a JSON string",
        'serialise the arguments: "arguments": "{\\"city\\": \\"Paris\\"}"',
    ),
    Rule(
        "tool_arguments_invalid_json",
        "error",
        "example",
        "a tool call's `arguments` string is not valid JSON",
        "make arguments a valid JSON text",
    ),
    Rule(
        "duplicate_tool_call_id",
        "error",
        "example",
        "two tool calls share one id",
        "give every tool call its own id",
    ),
    Rule(
        "unanswered_tool_call",
        "error",
        "example",
        "a tool call has no tool message answering its id before the conversation moves on "
        "(an example may end on the assistant's calls)",
        "add a {role: tool, tool_call_id, content} message for every call",
    ),
    Rule(
        "unknown_tool_call_id",
        "error",
        "example",
        "a tool message answers an id no earlier assistant message called",
        "set tool_call_id to the id of the call it answers",
    ),
    Rule(
        "undeclared_tool",
        "warning",
        "example",
        "a tool call names a function the example's `tools` does not declare",
        "declare the function in tools, or fix the name",
    ),
    Rule(
        "missing_tools",
        "warning",
        "example",
        "tool calls in an example that declares no `tools`",
        "add the tools list so the model learns when to call them",
    ),
    # --- images ---
    Rule(
        "too_many_images",
        "error",
        "example",
        "more images in one example than the model allows",
        "split the example or drop images",
    ),
    Rule(
        "image_in_non_user_message",
        "error",
        "example",
        "an image outside a user message (assistant, system, tool)",
        "images may only appear in user messages",
    ),
    Rule(
        "invalid_image_url",
        "error",
        "example",
        "an image URL that is neither http(s) nor a data:image URL",
        "use a public https URL or a base64 data URL",
    ),
    Rule(
        "images_not_supported",
        "error",
        "example",
        "images for a method or model that takes none (DPO, RFT, text-only models)",
        "remove the images, or choose a vision model (gpt-4o-2024-08-06)",
    ),
    # --- shapes of the other methods and formats ---
    Rule(
        "unrecognized_example_key",
        "error",
        "example",
        "a top-level key the format does not define",
        "remove the key, or fix its spelling",
    ),
    Rule(
        "wrong_example_format",
        "error",
        "example",
        "a line in another format than the method's (e.g. a DPO pair in supervised data)",
        "keep one format per file, matching the method",
    ),
    Rule(
        "preference_missing_key",
        "error",
        "example",
        "a DPO example lacks input, preferred_output or non_preferred_output",
        "add the missing key (see the DPO format)",
    ),
    Rule(
        "invalid_preference_input",
        "error",
        "example",
        "a DPO `input` that is not an object with a non-empty messages list",
        'write input as {"messages": [...]}',
    ),
    Rule(
        "invalid_preference_output",
        "error",
        "example",
        "a DPO output that is not a list of exactly one assistant message with text",
        'write [{"role": "assistant", "content": "..."}]',
    ),
    Rule(
        "identical_preference_outputs",
        "warning",
        "example",
        "the preferred and non-preferred outputs are the same",
        "make the two outputs differ",
    ),
    Rule(
        "rft_last_message_not_user",
        "error",
        "example",
        "a reinforcement example does not end with a user message",
        "end the messages with the user turn the model should answer",
    ),
    Rule(
        "invalid_completion_example",
        "error",
        "example",
        "a legacy example without string `prompt` and `completion`",
        "give both as strings, or use the chat format",
    ),
    # --- tokens ---
    Rule(
        "example_too_long",
        "warning",
        "example",
        "more tokens than the model's training-example limit; the end will be cut off",
        "shorten the example or split the conversation",
    ),
    # --- the whole dataset ---
    Rule(
        "too_few_examples",
        "error",
        "dataset",
        "fewer examples than the API's minimum (10)",
        "add examples: 50 to 100 good ones are a better start",
    ),
    Rule(
        "below_recommended_examples",
        "info",
        "dataset",
        "fewer than 50 examples, the guide's recommended start",
        "add examples if results are weak",
    ),
    Rule(
        "duplicate_example",
        "warning",
        "dataset",
        "an example identical to an earlier line",
        "drop duplicates (autofix does)",
    ),
    Rule(
        "validation_overlap",
        "warning",
        "dataset",
        "a validation example identical to a training example",
        "remove it from one side; validation metrics are only honest on unseen examples",
    ),
    Rule(
        "examples_missing_system_message",
        "info",
        "dataset",
        "examples without a system (or developer) message, counted as the cookbook does",
        "add the same system prompt to every example if you will use one (autofix can)",
    ),
    Rule(
        "examples_missing_user_message",
        "warning",
        "dataset",
        "examples without a user message, counted as the cookbook does",
        "add the user turn the assistant answers",
    ),
    Rule(
        "mixed_example_formats",
        "error",
        "dataset",
        "the file mixes formats (chat, DPO, legacy completion)",
        "keep one format per file",
    ),
    Rule(
        "validation_file_required",
        "warning",
        "dataset",
        "reinforcement fine-tuning without a validation file (Azure requires one)",
        "pass a validation file",
    ),
    # --- Azure OpenAI's own rules (preflight(..., profile="azure"), data/azure_profile.py) ---
    Rule(
        "azure_file_too_large",
        "error",
        "file",
        "over 512 MB: Azure OpenAI takes training and validation files under 512 MB",
        "train on a smaller sample, or split the examples across jobs",
    ),
    Rule(
        "azure_byte_order_mark_missing",
        "info",
        "file",
        "no UTF-8 byte-order mark, which Azure OpenAI's documentation asks training files to "
        "include (OpenAI's format has none)",
        "if Azure refuses the file, save it as UTF-8 with a BOM (Python's encoding='utf-8-sig')",
    ),
    Rule(
        "azure_resource_file_limits",
        "info",
        "dataset",
        "an Azure OpenAI resource holds at most 50 fine-tuning files, 1 GB in all",
        "delete files the resource no longer needs (client.files.delete) before uploading more",
    ),
    Rule(
        "azure_validation_file_required",
        "error",
        "dataset",
        "reinforcement fine-tuning on Azure OpenAI without a validation file",
        "pass a validation file (RFT-style examples, at most 1,000)",
    ),
    Rule(
        "azure_rft_too_many_examples",
        "error",
        "dataset",
        "over Azure OpenAI's reinforcement fine-tuning limit: 50,000 training, 1,000 "
        "validation examples",
        "train on a sample of the examples",
    ),
    # --- the model ---
    Rule(
        "no_model",
        "info",
        "model",
        "no model was given: the data is checked alone, without a model's token limit, image "
        "limit, methods, format, shutdown date or price",
        "pass the base model you will fine-tune (model=... in Python, --model on the command "
        "line) to check those too",
    ),
    Rule(
        "unknown_model",
        "warning",
        "model",
        "the model is not in the table: o200k_base is assumed, no token limit, no cost",
        "use a known base model name, or ignore this for a custom backend",
    ),
    Rule(
        "method_not_supported",
        "error",
        "model",
        "the model cannot be fine-tuned with this method",
        "choose a model the method supports (see the model table)",
    ),
    Rule(
        "format_not_supported",
        "error",
        "model",
        "the data's format (that of its first example) is not the model's: chat data for a "
        "completions model, or prompt/completion data for a chat model",
        "convert the data, or pick a model for that format",
    ),
    Rule(
        "backend_rejects_example",
        "error",
        "model",
        "the backend's own model cannot read an example preflight found nothing wrong with "
        "(the local backend's chat template and tokenizer: an image, for one)",
        "change the example as the message says, or use a backend whose model reads it",
    ),
    Rule(
        "model_shut_down",
        "error",
        "model",
        "the base model's shutdown date has passed; jobs and fine-tunes on it stop working",
        "pick a model that is still served (Azure OpenAI, or the local backend)",
    ),
    Rule(
        "model_shutdown_soon",
        "warning",
        "model",
        "the base model shuts down within 180 days, and every fine-tune built on it with it",
        "plan a migration; export data and results before that date",
    ),
    Rule(
        "cost_not_estimated",
        "info",
        "model",
        "no cost estimate: no known per-token price (or billing is per hour, as for RFT)",
        "check the provider's pricing page",
    ),
)


def make_issue(
    code: str,
    line: int | None,
    field: str | None,
    message: str,
    *,
    file: FileRole = "training",
    fix: str | None = None,
) -> Issue:
    """Build an issue for a catalogued rule, taking its severity and standard fix.

    Args:
        code: A key of ``RULES``.
        line: The line, or ``None``.
        field: The field path, or ``None``.
        message: What is wrong, with the values involved.
        file: ``"training"`` or ``"validation"``.
        fix: A more specific fix than the rule's standard one.

    Returns:
        The issue.
    """
    rule = RULES[code]
    return Issue(code, rule.severity, line, field, message, fix or rule.fix, file)
