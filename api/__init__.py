"""TicketFlow's transactional core: events, orders, payments, refunds and check-in over HTTP."""
