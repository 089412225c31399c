"""Protocol-faithful fakes of the remote services, started by the test suite on 127.0.0.1."""
