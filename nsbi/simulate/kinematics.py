"""Four-lepton kinematics from the generator variables (built with the ``vector`` package).

Convention (all frames have axes parallel to the lab axes; the ZZ rest frame is reached from the
lab by a pure, rotation-free boost):

* ZZ rest frame: Z1 flies along  z1 = (sin t* cos psi, sin t* sin psi, cos t*)  with
  cos t* = cos_theta_star and psi a uniform random azimuth; Z2 along -z1. Both have the
  two-body momentum  p* = sqrt(lambda(m4l^2, mZ1^2, mZ2^2)) / (2 m4l).
* Transverse basis around the Z1 axis:  x1 = d z1 / d t* = (cos t* cos psi, cos t* sin psi, -sin t*)
  (it lies in the production plane spanned by the beam and Z1) and  y1 = z1 x x1 = (-sin psi, cos psi, 0).
* Z1 rest frame: the negative lepton flies along
  n1 = sin t1 cos(Phi1) x1 + sin t1 sin(Phi1) y1 + cos t1 z1, the positive one along -n1.
* Z2 rest frame: the negative lepton flies along
  n2 = sin t2 cos(Phi1 + Phi) x1 + sin t2 sin(Phi1 + Phi) y1 + cos t2 (-z1), the positive one along -n2,
  i.e. theta2 is measured from the Z2 flight direction and both decay-plane azimuths are measured
  in the common (x1, y1) basis: Phi1 is the azimuth of the Z1 decay plane w.r.t. the production
  plane and Phi the azimuth of the Z2 decay plane w.r.t. the Z1 decay plane.
* Leptons are massless (E = m_Z / 2 in the Z rest frame), boosted Z rest -> ZZ rest -> lab, where
  the four-lepton system has P = (mT cosh y, pT cos phiP, pT sin phiP, mT sinh y),
  mT = sqrt(m4l^2 + pT^2), and phiP a second uniform random azimuth.
* Flavour: each Z decays to ee or mumu with probability 1/2; pdgid = +11/+13 for the negative
  and -11/-13 for the positive lepton (PDG convention), charge = -1/+1.
* Output leptons are sorted by pt, descending, per event.
"""

from __future__ import annotations

import numpy as np
import vector


def _p4(px, py, pz, E):
    return vector.array({"px": px, "py": py, "pz": pz, "E": E})


def build_leptons(gen: dict, psi: np.ndarray, phi_p: np.ndarray, flavour_mu: np.ndarray):
    """Lab-frame lepton four-momenta, unsorted, shape (n, 4) each for px, py, pz, E.

    Lepton order along axis 1: (Z1 l-, Z1 l+, Z2 l-, Z2 l+). ``flavour_mu`` is a bool (n, 2)
    array (True: the Z decays to muons).
    Returns dict with px, py, pz, E (float64, (n, 4)), charge and pdgid (int32, (n, 4)),
    zidx (int32, (n, 4), 1 or 2).
    """
    m = np.asarray(gen["m4l"], dtype=float)
    m1 = np.asarray(gen["mZ1"], dtype=float)
    m2 = np.asarray(gen["mZ2"], dtype=float)
    cs = np.asarray(gen["cos_theta_star"], dtype=float)
    c1 = np.asarray(gen["cos_theta1"], dtype=float)
    c2 = np.asarray(gen["cos_theta2"], dtype=float)
    Phi = np.asarray(gen["phi"], dtype=float)
    Phi1 = np.asarray(gen["phi1"], dtype=float)
    pt = np.asarray(gen["pt4l"], dtype=float)
    y = np.asarray(gen["y4l"], dtype=float)
    n = m.shape[0]

    ss = np.sqrt(np.clip(1.0 - cs**2, 0.0, None))
    cpsi, spsi = np.cos(psi), np.sin(psi)
    z1 = np.stack([ss * cpsi, ss * spsi, cs])  # (3, n)
    x1 = np.stack([cs * cpsi, cs * spsi, -ss])
    y1 = np.stack([-spsi, cpsi, np.zeros(n)])

    lam = (m**2 - (m1 + m2) ** 2) * (m**2 - (m1 - m2) ** 2)
    pstar = np.sqrt(np.clip(lam, 0.0, None)) / (2.0 * m)
    e1 = np.sqrt(pstar**2 + m1**2)
    e2 = np.sqrt(pstar**2 + m2**2)

    def direction(c, az, zaxis):
        s = np.sqrt(np.clip(1.0 - c**2, 0.0, None))
        return s * np.cos(az) * x1 + s * np.sin(az) * y1 + c * zaxis

    n1 = direction(c1, Phi1, z1)
    n2 = direction(c2, Phi1 + Phi, -z1)

    # Z four-momenta in the ZZ rest frame, one per lepton slot
    zmom = np.stack([pstar * z1, pstar * z1, -pstar * z1, -pstar * z1], axis=-1)  # (3, n, 4)
    zE = np.stack([e1, e1, e2, e2], axis=-1)
    half = np.stack([0.5 * m1, 0.5 * m1, 0.5 * m2, 0.5 * m2], axis=-1)
    ldir = np.stack([n1, -n1, n2, -n2], axis=-1)  # (3, n, 4)
    lep_rest = _p4(half * ldir[0], half * ldir[1], half * ldir[2], half)
    zz_frame = lep_rest.boost_p4(_p4(zmom[0], zmom[1], zmom[2], zE))

    mt = np.sqrt(m**2 + pt**2)
    P = _p4(pt * np.cos(phi_p), pt * np.sin(phi_p), mt * np.sinh(y), mt * np.cosh(y))
    P4 = _p4(*(np.repeat(np.asarray(c)[:, None], 4, axis=1) for c in (P.px, P.py, P.pz, P.E)))
    lab = zz_frame.boost_p4(P4)

    flav = np.where(np.asarray(flavour_mu, dtype=bool), 13, 11).astype(np.int32)  # (n, 2)
    flav4 = np.repeat(flav, 2, axis=1)
    charge = np.tile(np.array([-1, 1, -1, 1], dtype=np.int32), (n, 1))
    pdgid = (-charge * flav4).astype(np.int32)
    zidx = np.tile(np.array([1, 1, 2, 2], dtype=np.int32), (n, 1))
    return {
        "px": np.asarray(lab.px, dtype=float),
        "py": np.asarray(lab.py, dtype=float),
        "pz": np.asarray(lab.pz, dtype=float),
        "E": np.asarray(lab.E, dtype=float),
        "charge": charge,
        "pdgid": pdgid,
        "zidx": zidx,
    }


def lepton_observables(lep: dict, scale: float = 1.0) -> dict:
    """(pt, eta, phi, E) of leptons (n, 4) from px, py, pz, E, four-momenta scaled by ``scale``."""
    v = _p4(lep["px"] * scale, lep["py"] * scale, lep["pz"] * scale, lep["E"] * scale)
    return {
        "pt": np.asarray(v.pt, dtype=float),
        "eta": np.asarray(v.eta, dtype=float),
        "phi": np.asarray(v.phi, dtype=float),
        "E": np.asarray(v.E, dtype=float),
    }


def system_observables_unsorted(lep: dict, scale: float = 1.0) -> dict:
    """m4l, mZ1, mZ2, pt4l, y4l from the unsorted lepton four-momenta of :func:`build_leptons`
    (slots 0, 1 from Z1 and 2, 3 from Z2), all scaled by ``scale``."""
    comp = {c: lep[c] * scale for c in ("px", "py", "pz", "E")}
    tot = _p4(*(comp[c].sum(axis=1) for c in ("px", "py", "pz", "E")))
    z1 = _p4(*(comp[c][:, 0] + comp[c][:, 1] for c in ("px", "py", "pz", "E")))
    z2 = _p4(*(comp[c][:, 2] + comp[c][:, 3] for c in ("px", "py", "pz", "E")))
    return {
        "m4l": np.asarray(tot.mass, dtype=float),
        "mZ1": np.asarray(z1.mass, dtype=float),
        "mZ2": np.asarray(z2.mass, dtype=float),
        "pt4l": np.asarray(tot.pt, dtype=float),
        "y4l": np.asarray(tot.rapidity, dtype=float),
    }


def sort_by_pt(arrays: dict) -> dict:
    """Sort every (n, 4) array in ``arrays`` by the 'pt' entry, descending, per event."""
    order = np.argsort(-arrays["pt"], axis=1, kind="stable")
    return {k: np.take_along_axis(v, order, axis=1) for k, v in arrays.items()}
