"""The coordinator: Admin and Metadata services, replica placement, leader elections."""
