from storytool.cli import app

app(prog_name="storytool")
