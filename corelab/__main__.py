from corelab.cli import app

app(prog_name="corelab")
