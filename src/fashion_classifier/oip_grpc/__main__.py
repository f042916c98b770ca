from fashion_classifier.oip_grpc.server import main

raise SystemExit(main())
