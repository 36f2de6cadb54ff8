"""A few equations from the AI Feynman benchmark (Udrescu & Tegmark 2020, arXiv 1905.11481).

Each entry: the formula (an expression in the variables) and the sampling range of
each variable, as in the Feynman Symbolic Regression Database.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeynmanEquation:
    id: str
    description: str
    formula: str
    ranges: dict[str, tuple[float, float]]


EQUATIONS: dict[str, FeynmanEquation] = {
    eq.id: eq
    for eq in [
        FeynmanEquation(
            "I.13.4",
            "kinetic energy of a mass m with velocity components v, u, w",
            "0.5*m*(v**2 + u**2 + w**2)",
            {"m": (1, 5), "v": (1, 5), "u": (1, 5), "w": (1, 5)},
        ),
        FeynmanEquation(
            "I.12.4",
            "electric field of a charge q1 at distance r",
            "q1/(4*pi*epsilon*r**2)",
            {"q1": (1, 5), "epsilon": (1, 5), "r": (1, 5)},
        ),
        FeynmanEquation(
            "I.14.4",
            "energy stored in a spring of stiffness k stretched by x",
            "0.5*k*x**2",
            {"k": (1, 5), "x": (1, 5)},
        ),
        FeynmanEquation(
            "I.6.20a",
            "standard normal density at theta",
            "exp(-theta**2/2)/sqrt(2*pi)",
            {"theta": (1, 3)},
        ),
        FeynmanEquation(
            "I.10.7",
            "relativistic mass of rest mass m_0 at speed v (light speed c)",
            "m_0/sqrt(1 - v**2/c**2)",
            {"m_0": (1, 5), "v": (1, 2), "c": (3, 10)},
        ),
        FeynmanEquation(
            "II.3.24",
            "power flux at distance r from a source of power P",
            "P/(4*pi*r**2)",
            {"P": (1, 5), "r": (1, 5)},
        ),
        FeynmanEquation(
            "I.12.1",
            "friction force with coefficient mu and normal force Nn",
            "mu*Nn",
            {"mu": (1, 5), "Nn": (1, 5)},
        ),
        FeynmanEquation(
            "I.14.3",
            "potential energy of a mass m at height z with gravity g",
            "m*g*z",
            {"m": (1, 5), "g": (1, 5), "z": (1, 5)},
        ),
        FeynmanEquation(
            "I.25.13",
            "voltage across a capacitor C holding charge q",
            "q/C",
            {"q": (1, 5), "C": (1, 5)},
        ),
        FeynmanEquation(
            "I.34.27",
            "energy of a photon of angular frequency omega (Planck constant h)",
            "h/(2*pi)*omega",
            {"omega": (1, 5), "h": (1, 5)},
        ),
        FeynmanEquation(
            "I.39.1",
            "energy of an ideal gas at pressure pr in volume V",
            "3/2*pr*V",
            {"pr": (1, 5), "V": (1, 5)},
        ),
        FeynmanEquation(
            "II.27.16",
            "energy flux of an electric field Ef (speed c, permittivity epsilon)",
            "epsilon*c*Ef**2",
            {"epsilon": (1, 5), "c": (1, 5), "Ef": (1, 5)},
        ),
        FeynmanEquation(
            "I.18.12",
            "torque of a force F at distance r and angle theta",
            "r*F*sin(theta)",
            {"r": (1, 5), "F": (1, 5), "theta": (0, 5)},
        ),
        FeynmanEquation(
            "I.27.6",
            "focal length of lenses at distances d1, d2 with index n",
            "1/(1/d1 + n/d2)",
            {"d1": (1, 5), "d2": (1, 5), "n": (1, 5)},
        ),
    ]
}
