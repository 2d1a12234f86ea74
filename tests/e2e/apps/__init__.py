"""Tiny runnerq apps that the e2e tests run with the real ``runnerq worker`` command."""
