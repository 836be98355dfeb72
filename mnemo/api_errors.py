"""The refusals a handler raises: each says its status, its error_code and its detail.

Handlers raise these (storage raises its own, in storage.model); mnemo.errors turns every
failure, these included, into the contract's ``{detail, error_code, request_id}``.
"""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    error_code = "BAD_REQUEST"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        # Fields the operation's error answer carries beside detail and error_code.
        self.extra = extra or {}


class NotFound(ApiError):
    status = 404
    error_code = "NOT_FOUND"


class MemoryNotFound(NotFound):
    def __init__(self, memory_id: str):
        super().__init__(f"Memory with ID {memory_id} not found")


class UserIdRequired(ApiError):
    def __init__(self):
        # Agno's exact words: its clients and tests match on them.
        super().__init__("User ID is required")


class SearchQuestionRequired(ApiError):
    error_code = "SEARCH_QUESTION_REQUIRED"

    def __init__(self, search_mode: str):
        super().__init__(f"search_mode={search_mode} ranks memories by a question: "
                         "give it in search_content")


class Forbidden(ApiError):
    status = 403
    error_code = "FORBIDDEN"


class Unavailable(ApiError):
    status = 503
    error_code = "DATABASE_UNAVAILABLE"


class NotImplementedYet(ApiError):
    status = 501
    error_code = "NOT_IMPLEMENTED"
