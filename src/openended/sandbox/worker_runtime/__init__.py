"""The code that runs inside the sandbox: a fork server and the child that runs one program.

Standard library only. The host starts ``python -I -c`` with this package's parent folder on
``sys.path`` (bind-mounted read-only under bubblewrap) and calls `main.main`.
"""
