"""Properties of liquid argon used by the transport.

Values are from the PDG "Atomic and nuclear properties of materials" page for liquid argon
(density at 87 K, Sternheimer density-effect parameters, radiation and interaction lengths),
and the mean energy per electron-ion pair W_ion = 23.6 eV.
"""

Z = 18
A = 39.948  # g/mol
Z_OVER_A = 0.45059
DENSITY = 1.396  # g/cm^3
MEAN_EXCITATION_MEV = 188.0e-6  # ICRU-37, as Geant4 uses; measurements give 197-205 eV
STERNHEIMER = {"cbar": 5.2146, "x0": 0.2000, "x1": 3.0000, "a": 0.19559, "k": 3.0000, "delta0": 0.0}
RADIATION_LENGTH_CM = 14.00  # 19.55 g/cm^2
INTERACTION_LENGTH_CM = 85.77  # nuclear interaction length, 119.7 g/cm^2
MOLIERE_RADIUS_CM = 9.04
W_ION_MEV = 23.6e-6
K_BETHE = 0.307075  # MeV cm^2 / mol, 4 pi N_A r_e^2 m_e c^2 (PDG)
MIP_DEDX_MEV_PER_CM = 2.105  # PDG tabulated minimum ionization for liquid argon
