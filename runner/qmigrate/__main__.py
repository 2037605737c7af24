from qmigrate.cli import main

raise SystemExit(main())
