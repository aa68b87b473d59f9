from consumers.stats.cli import main

raise SystemExit(main())
