"""One module per Lambda function; each handler parses its event and calls one plain function."""
