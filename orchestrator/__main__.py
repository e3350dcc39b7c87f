from orchestrator.entry import main

raise SystemExit(main())
