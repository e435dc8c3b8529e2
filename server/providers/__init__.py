"""Outbound adapters to payment and messaging providers, implementing the ports ``lms_domain`` owns."""
