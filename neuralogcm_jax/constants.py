"""Physical constants in SI units (the reference numbers of the project's tests)."""

EARTH_RADIUS_M = 6.371e6
OMEGA_RAD_S = 7.292115e-5
GRAVITY_M_S2 = 9.81
RHO0_KG_M3 = 1025.0
RHO_AIR_KG_M3 = 1.225
CP_SEAWATER_J_KG_K = 3991.86795711963  # TEOS-10 cp0
SECONDS_PER_DAY = 86400.0
KELVIN_OFFSET = 273.15  # degC = K - KELVIN_OFFSET
