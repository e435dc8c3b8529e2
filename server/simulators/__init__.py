"""In-project simulators of the outside services Somo talks to (payment providers first).

They speak the providers' real HTTP wire formats on loopback, so adapters are tested over
real HTTP, including the providers' faults, without any HTTP mocking.
"""
