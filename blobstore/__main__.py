from blobstore.cli.main import main

main()
