"""A Studio job's process: `python -m autoscope.studio.child <rc_file> <studio_pid> <cli words>`.

Runs the real CLI (`autoscope.cli.main`) on the words, so a job does exactly what the command
does, and writes its exit status to `rc_file` (atomically) so the Studio learns it even after a
restart. It dies with the Studio (`autoscope.procs.die_with_parent`, watchdog only: the Studio
starts jobs from short-lived threads); the stages resume as they do after any interrupted run.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Run the CLI words `argv[2:]`, record the exit status in `argv[0]`."""
    from autoscope.atomic import write_text
    from autoscope.procs import die_with_parent

    rc_file, parent, words = argv[0], int(argv[1]), argv[2:]
    die_with_parent(parent, kernel=False)
    from autoscope.cli import main as cli_main

    rc = 1
    try:
        rc = int(cli_main(words) or 0)
    except SystemExit as e:  # argparse or Hydra exit inside the stage
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        write_text(rc_file, f"{rc}\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
