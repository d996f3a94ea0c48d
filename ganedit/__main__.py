from ganedit.cli import run

run()
