"""What a stand-in model says to a request: text, a tool call, or JSON for a schema.

``compose`` reads the request the way a model would: it calls a bound tool when tools
are given, fills structured output from the requested JSON schema, answers a tool result,
and otherwise says the given text. ``sample_text`` is a prompt-aware default text.
Token counts are the usual rough estimate (~4 characters a token).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from routedllm.testing.wire import ToolCall


@dataclass(frozen=True, slots=True)
class Reply:
    """The content (or tool call) of one answer, with its finish reason."""

    content: str | None
    tool_call: tuple[str, str] | None  # (function name, JSON arguments)
    finish_reason: str

    def tool_calls(self, call_id: str) -> tuple[ToolCall, ...]:
        """The tool call as wire ``ToolCall``s, with ``call_id``."""
        if self.tool_call is None:
            return ()
        return (ToolCall(call_id, *self.tool_call),)

    @property
    def output(self) -> str:
        """What the completion tokens count: the text or the call's arguments."""
        return self.tool_call[1] if self.tool_call else (self.content or "")


def compose(body: dict[str, Any], text: str) -> Reply:
    """The reply to ``body``: a tool call, JSON for a requested format, or ``text``.

    ``stop`` sequences cut the text.
    """
    last = _last(body)
    call = _tool_call(body, last)
    if call is not None:
        return Reply(None, call, "tool_calls")
    return Reply(_cut(_content(body, last, text), body.get("stop")), None, "stop")


def max_tokens(body: dict[str, Any]) -> int | None:
    """The request's output cap (``max_completion_tokens`` or ``max_tokens``), if any."""
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    return cap if isinstance(cap, int) and cap > 0 else None


def prompt_text(body: dict[str, Any]) -> str:
    """The text of the last message."""
    return _text(_last(body).get("content"))


def estimate_tokens(text: str) -> int:
    """~4 characters a token, at least 1."""
    return max(1, math.ceil(len(text) / 4))


def prompt_tokens(body: dict[str, Any]) -> int:
    """~4 characters a token plus 4 a message, plus the tool definitions."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    chars = sum(len(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    tools = body.get("tools")
    extra = len(json.dumps(tools)) // 4 if tools else 0
    return max(1, math.ceil(chars / 4) + 4 * len(messages) + extra)


def sample_text(prompt: str, *, image: bool = False) -> str:
    """A plausible answer to a few common prompts (greetings, a haiku, a story, an image)."""
    lower = prompt.lower()
    if image:
        return "The image shows a single red pixel on a white background."
    if "haiku" in lower:
        return (
            "Soft rain on the roof,\nthe kettle begins to sing,\n"
            "the cat stretches slow.\n\nMorning light spills in,\n"
            "dust drifts through a golden beam,\nthe house breathes again."
        )
    if "story" in lower:
        return (
            "A small grey cat named Pip found a sunbeam on the library floor. She followed "
            "it from shelf to shelf all afternoon, and when the sun went down she curled "
            "up where the last of the light had been."
        )
    if "how are you" in lower:
        return "I'm doing well, thank you for asking! How can I help you today?"
    if re.search(r"\b(hello|hi|hey)\b", lower):
        return "Hello! How can I help you today?"
    return "Here is a short answer to your request."


def has_image(body: dict[str, Any]) -> bool:
    """True when the last message carries an image part."""
    return any(p.get("type") == "image_url" for p in _parts(_last(body).get("content")))


# -- inside ---------------------------------------------------------------------------------
def _last(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1]
    return {"role": "user", "content": ""}


def _tool_call(body: dict[str, Any], last: dict[str, Any]) -> tuple[str, str] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and "function" in t]
    choice = body.get("tool_choice")
    after_tool = last.get("role") == "tool"
    forced = isinstance(choice, dict) or choice in ("required", "any")
    if not tools or choice == "none" or (after_tool and not forced):
        return None
    prompt = _text(last.get("content"))
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        fn = next((t["function"] for t in tools if t["function"]["name"] == name), None)
        if fn is None:
            return None
    elif after_tool:  # forced to call again: a tool not called yet (an agent's answer tool)
        called = _called(body)
        fn = ([t for t in tools if t["function"]["name"] not in called] or tools)[-1]["function"]
    else:
        named = [t["function"] for t in tools if t["function"]["name"] in prompt]
        fn = (named or [tools[0]["function"]])[0]
    args = _Example(prompt).value(fn.get("parameters") or {"type": "object"})
    return fn["name"], json.dumps(args, ensure_ascii=False)


def _called(body: dict[str, Any]) -> set[str]:
    """Names of the tools the conversation's assistant turns have called."""
    names: set[str] = set()
    for message in body.get("messages") or ():
        for call in (message.get("tool_calls") or ()) if isinstance(message, dict) else ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names.add(str(call["function"].get("name")))
    return names


def _content(body: dict[str, Any], last: dict[str, Any], text: str) -> str:
    prompt = _text(last.get("content"))
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema", {}).get("schema") or {"type": "object"}
        return json.dumps(_Example(prompt).value(schema), ensure_ascii=False)
    if fmt.get("type") == "json_object":
        keys = re.findall(r"'(\w+)'", prompt) or ["answer"]
        return json.dumps({k: _Example(prompt).string(k) for k in keys})
    if last.get("role") == "tool":
        return f"The tool returned {prompt}."
    return text


class _Example:
    """Example values for a JSON schema, taken from the prompt where it has them."""

    _WORDS = {
        "setup": "Why did the cat sit on the computer?",
        "punchline": "To keep an eye on the mouse.",
        "location": "San Francisco, CA",
        "answer_style": "pirate",
    }

    def __init__(self, prompt: str) -> None:
        self.ints = [int(n) for n in re.findall(r"-?\d+", prompt)]
        self.quoted = re.findall(r"'([^']+)'", prompt)

    def value(
        self, schema: dict[str, Any], name: str = "", defs: dict[str, Any] | None = None
    ) -> Any:
        defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
        if "$ref" in schema:
            return self.value(defs[schema["$ref"].rsplit("/", 1)[-1]], name, defs)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [s for s in schema[key] if s.get("type") != "null"]
                return self.value(options[0], name, defs) if options else None
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type", "object")
        if kind == "object":
            props = schema.get("properties", {})
            return {k: self.value(v, k, defs) for k, v in props.items()}
        if kind == "array":
            return [self.value(schema.get("items", {"type": "string"}), name, defs)]
        if kind == "integer":
            return self.ints.pop(0) if self.ints else 1
        if kind == "number":
            return float(self.ints.pop(0)) if self.ints else 1.5
        if kind == "boolean":
            return True
        return self.string(name)

    def string(self, name: str) -> str:
        if name in self._WORDS:
            return self._WORDS[name]
        if self.quoted:
            return self.quoted.pop(0)
        return f"example {name}".strip()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) for p in _parts(content) if p.get("type") == "text")


def _parts(content: Any) -> list[dict[str, Any]]:
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _cut(text: str, stop: Any) -> str:
    for s in [stop] if isinstance(stop, str) else (stop or []):
        if isinstance(s, str) and s and s in text:
            text = text[: text.index(s)]
    return text
