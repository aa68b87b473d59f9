from consumers.alerter.cli import main

raise SystemExit(main())
