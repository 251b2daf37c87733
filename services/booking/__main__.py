from shared.runner import run_service

run_service("booking")
