from typer.testing import CliRunner

from corelab import __version__
from corelab.cli import app


def test_version_prints_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"corelab {__version__}"


def test_help_lists_program_purpose():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "infarct" in result.output
