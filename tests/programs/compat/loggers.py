from qiskit_serverless import get_logger, get_provider_logger

print("plain print")
get_logger().info("for the user\nsecond line")
get_provider_logger().warning("for the provider")
