from ssast_fast.cli.parser import main

raise SystemExit(main())
