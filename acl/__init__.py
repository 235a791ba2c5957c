"""Principals, authentication, the ACL model and the permission filter as plain data."""
