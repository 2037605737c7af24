"""The one exception type: everything a user should read ends up here."""

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_INVALID = 2
EXIT_CHECK_FAILED = 3  # verify: the data does not match


class QmigrateError(Exception):
    """A failure with a message meant for the user, not a traceback.

    `exit_code` is 2 for an invalid job or usage, 1 for anything that went wrong at run time.
    """

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def invalid(message: str) -> QmigrateError:
    """An error in the job file or the command line (exit code 2)."""
    return QmigrateError(message, EXIT_INVALID)


class SourceError(QmigrateError):
    """A source's verdict, said in one line as `source <label>: <cause>`; never retried."""

    def __init__(self, label: str, cause: str) -> None:
        super().__init__(f"source {label}: {cause}")


class TransientError(Exception):
    """A failure worth another try, as its raiser knows it to be.

    A source whose client tells throttling or a lost server in its own way (a code in a
    method, a Milvus status) raises this, from the client's exception, instead of dressing
    the error up as another client's so that `retry.is_transient` recognises it.
    """
