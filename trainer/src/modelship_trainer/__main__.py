from modelship_trainer.cli import main

raise SystemExit(main())
