"""Wire documents between Pilotage processes: plain data, each parsed and produced in one module."""
