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
