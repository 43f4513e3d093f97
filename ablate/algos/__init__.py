"""Algorithms beyond what TRL's trainers express by options alone (see ``conf/algo/``)."""
