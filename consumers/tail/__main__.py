from consumers.tail.cli import main

raise SystemExit(main())
