# A provider function: reads the provider's file from /function_data and lists it via the client.
from qiskit_serverless import ServerlessClient, get_arguments, save_result

name = get_arguments()["name"]
with open(f"/function_data/{name}") as handle:
    content = handle.read()
client = ServerlessClient()
save_result({"content": content, "provider_files": client.provider_files("acme/reader")})
