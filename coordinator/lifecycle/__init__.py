"""A job's path through the coordinator: the driver steps each open job through its phases
(opening: match and assign; seating: deliver and watch the seats; closing: reveals, the
verdict, settlement), with the providers' consent asked on the way (offers)."""
