from __future__ import annotations

from gastown.main import main

raise SystemExit(main())
