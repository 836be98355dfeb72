"""optimize-memories: a language model rewrites all of a user's memories as one summary.

The model is any server that speaks the OpenAI chat-completions API (OpenAI itself, Ollama,
vLLM, LiteLLM...). Nothing is stored until the model has answered with a usable summary, and
then in one transaction, so a failing or slow model changes nothing; and only if the memories
it summarized are still as it read them, so what changed while it was thinking is never lost.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import httpx

from storage import Memory, MemoryRepository, unique_topics, utcnow

from .api_errors import ApiError
from .config import ModelConfig, openai_model_id
from .upstream import upstream_message

log = logging.getLogger("mnemo")

# The contract's limits on one memory; the summary is stored as one.
MAX_MEMORY_CHARACTERS = 5000
MAX_TOPICS = 50
# Agno counts tokens with tiktoken when it is installed and otherwise estimates four characters
# per token; Mnemo reports the estimate (tiktoken would have to download its tables).
CHARACTERS_PER_TOKEN = 4

INSTRUCTIONS = (
    "You keep the long-term memory an AI assistant has of one person. You receive numbered "
    "notes about that person, oldest first. Rewrite them as a single note, written in the "
    "third person, that keeps every fact, preference and detail they contain. Say each thing "
    "once: merge notes that repeat or overlap, and where two notes disagree keep what the "
    f"later one says. Invent nothing. Stay under {MAX_MEMORY_CHARACTERS} characters. Answer "
    "with the note itself and nothing else."
)


class OptimizeError(ApiError):
    """optimize-memories cannot be carried out; ``status`` and ``detail`` say why."""


class ModelFailed(OptimizeError):
    status = 502
    error_code = "BAD_GATEWAY"


class ModelTimedOut(OptimizeError):
    status = 504
    error_code = "GATEWAY_TIMEOUT"


@dataclass(frozen=True)
class Optimization:
    memories: list[Memory]
    memories_before: int
    tokens_before: int
    tokens_after: int

    @property
    def tokens_saved(self) -> int:
        return max(0, self.tokens_before - self.tokens_after)

    @property
    def reduction_percentage(self) -> float:
        return self.tokens_saved / self.tokens_before * 100.0 if self.tokens_before else 0.0


def count_tokens(memories: list[Memory]) -> int:
    return sum(len(memory.memory) // CHARACTERS_PER_TOKEN for memory in memories)


def chosen_model(config: ModelConfig, requested: str | None) -> str:
    """The model id to ask for: the request's ``openai:<id>``, else the server's default."""
    if config.base_url is None:
        raise OptimizeError("No language model is configured: set MNEMO_OPENAI_BASE_URL (or "
                            "OPENAI_BASE_URL) to an OpenAI-compatible API, such as "
                            "https://api.openai.com/v1, and OPENAI_API_KEY if it needs a key")
    if requested:
        model_id = openai_model_id(requested)
        if not model_id:
            raise OptimizeError(f"Invalid model {requested!r}: Mnemo reaches models over the "
                                "OpenAI-compatible API, so name one as 'openai:<model-id>'")
        return model_id
    if config.default_model_id is None:
        raise OptimizeError("No model named: pass model as 'openai:<model-id>', or set "
                            "MNEMO_OPTIMIZE_MODEL on the server")
    return config.default_model_id


def optimize(repository: MemoryRepository, config: ModelConfig, user_id: str,
             requested_model: str | None, apply: bool) -> Optimization | None:
    """Summarize ``user_id``'s memories (and store the summary in their place if ``apply``);
    None if the user has no memories."""
    model = chosen_model(config, requested_model)
    memories = repository.of_user(user_id)
    if not memories:
        return None
    summary = _summary_of(memories, summarize(config, model, [m.memory for m in memories]))
    if apply:
        # Only over the memories the model read, as it read them (MemoriesChanged otherwise):
        # the model takes seconds, and a change or an erase meanwhile must not be undone.
        repository.replace_memories(user_id, memories, summary)
    return Optimization([summary], len(memories), count_tokens(memories), count_tokens([summary]))


def _summary_of(memories: list[Memory], text: str) -> Memory:
    """The summary as a memory: the user's, with every topic, and the agent (or team) when the
    memories that name one all name the same, as Agno does."""
    agents = {m.agent_id for m in memories if m.agent_id}
    teams = {m.team_id for m in memories if m.team_id}
    now = utcnow()
    return Memory(
        memory_id=str(uuid.uuid4()),
        memory=text,
        topics=unique_topics(t for m in memories for t in m.topics)[:MAX_TOPICS],
        user_id=memories[0].user_id,
        agent_id=agents.pop() if len(agents) == 1 else None,
        team_id=teams.pop() if len(teams) == 1 else None,
        created_at=now,
        updated_at=now,
    )


def summarize(config: ModelConfig, model: str, notes: list[str]) -> str:
    """The model's one-note summary of ``notes``; ModelFailed or ModelTimedOut if it gives none."""
    numbered = "\n".join(f"{number}. {note}" for number, note in enumerate(notes, start=1))
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    try:
        response = httpx.post(
            config.endpoint,
            json={"model": model, "messages": [
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": f"The notes:\n\n{numbered}"},
            ]},
            headers=headers,
            timeout=config.timeout_s,
        )
    except httpx.TimeoutException:
        raise ModelTimedOut(f"The model did not answer within {config.timeout_s:g} seconds") from None
    except httpx.HTTPError as error:
        log.warning("optimize-memories: the model server could not be reached: %s", error)
        raise ModelFailed("The model server could not be reached") from None
    if response.status_code >= 400:
        raise ModelFailed(f"The model server answered HTTP {response.status_code}"
                          + upstream_message(response))
    try:
        text = response.json()["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        raise ModelFailed("The model server's answer is not a chat completion") from None
    if not isinstance(text, str) or not text.strip():
        raise ModelFailed("The model answered with no text")
    text = text.strip()
    if len(text) > MAX_MEMORY_CHARACTERS:
        raise ModelFailed(f"The model's summary is {len(text)} characters long; a memory holds at "
                          f"most {MAX_MEMORY_CHARACTERS}")
    if "\x00" in text:
        raise ModelFailed("The model's summary contains NUL characters")
    return text
