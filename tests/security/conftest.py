"""The security tests print figures under load as the chaos suite does."""

from tests.chaos.conftest import figures  # noqa: F401
