"""USSD menu engine and Africa's Talking endpoints (a thin adapter over lms_domain)."""
