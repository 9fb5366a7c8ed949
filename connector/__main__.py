"""`python -m connector` runs the same command line as `aep-connector`."""

from connector.cli import main

if __name__ == "__main__":
    main()
