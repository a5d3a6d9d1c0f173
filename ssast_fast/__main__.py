from ssast_fast.cli import main

raise SystemExit(main())
