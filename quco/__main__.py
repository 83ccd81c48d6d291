from quco.cli import entry

entry()
