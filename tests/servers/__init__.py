"""Real servers for the tests: each module starts one on a free port and stops it by PID."""
