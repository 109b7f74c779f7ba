"""Toy physics model of gg -> (H* ->) ZZ -> 4l with signal/background interference, its electroweak
(VBF-like) counterpart with a second signal strength, and qq -> ZZ.

Everything here is closed-form, so the simulator doubles as an *oracle*: the exact
differential cross section of every process is known for every event.

Coordinates
-----------
An event is described by the ten generator variables (all densities in this package are
densities with respect to the Lebesgue measure in exactly these coordinates; note that the
polar angles enter through their cosines)::

    m4l            four-lepton mass, [M4L_MIN, M4L_MAX] = [220, 1000] GeV
    mZ1, mZ2       masses of the two Z bosons, each in [MZ_MIN, MZ_MAX] = [76, 106] GeV
    cos_theta_star cosine of the Z1 polar angle in the ZZ rest frame (w.r.t. the beam axis), [-1, 1]
    cos_theta1     cosine of the negative lepton's polar angle in the Z1 rest frame (helicity), [-1, 1]
    cos_theta2     same for Z2, [-1, 1]
    phi   (Phi)    angle between the two Z decay planes, [-pi, pi]
    phi1  (Phi1)   angle between the Z1 decay plane and the production (beam, Z1) plane, [-pi, pi]
    pt4l           transverse momentum of the four-lepton system, [0, inf) GeV
    y4l            rapidity of the four-lepton system, (-inf, inf)

Amplitudes (r = m4l / 350 GeV, s_i = sin(theta_i) = sqrt(1 - cos_theta_i^2))
-----------------------------------------------------------------------------
    dphi(m) = pi * (0.8 + 0.2 * tanh((m - 2 * 172.5) / 40))         (top-loop phase of the signal)
    A_S     = K_S * r * exp(i * dphi(m)) * s1 * s2
    A_B     = K_B * r^(-0.3) * [C_L * s1 * s2 + C_T * h * exp(i * (Phi + 0.3))]
    h       = 1/2 * sqrt((1 + c1^2) * (1 + c2^2) * (1 + 0.5 * cs^2))
    L(m)    = (m / 220)^(-4)                                           (parton luminosity)

with K_S = 1, K_B = 3, C_L = 0.6, C_T = 1. The gg densities are

    S      ~ L |A_S|^2,   B ~ L |A_B|^2,
    SBI(mu)~ L |sqrt(mu) A_S + A_B|^2 = mu S + sqrt(mu) I + B,
    I      = SBI(1) - S - B = 2 L Re(A_S conj(A_B))   (signed),

and qq -> ZZ is

    qqZZ   ~ (m / 220)^(-4.5) * [(1 + c1^2)(1 + c2^2) + 0.3 s1^2 s2^2] * (1 + 0.8 cs^2)   (no Phi dependence).

Every process has, in addition, the factorised densities

    bw(mZ1) * bw(mZ2) * f_pt(pt4l) * f_y(y4l)

where bw is a non-relativistic Breit-Wigner (Cauchy) with MZ = 91.1876 GeV, GAMMA_Z = 2.4952 GeV
truncated to [76, 106] GeV and normalised analytically with arctan, f_pt is a Gamma(shape 2,
scale 15 GeV) for gg and Gamma(2, 10 GeV) for qq, and f_y a Normal(0, 1.0) for gg and
Normal(0, 1.6) for qq. Phi1 does not appear in any amplitude (it is uniform); its 2 pi is part of
the angular integral below.

Normalisation
-------------
    dsigma_c / dx = N0_c * L(m) |A_c|^2 * bw(mZ1) bw(mZ2) f_pt(pt4l) f_y(y4l)      [fb / unit of x]

N0_gg is fixed such that sigma_B = SIGMA_B_FB = 10 fb and N0_qq such that sigma_qqZZ = 12 fb. The
angular integrals are analytic (int s^2 dc = 4/3, int (1 + c^2) dc = 8/3, int (1 + 0.5 c^2) dc = 7/3,
int (1 + 0.8 c^2) dc = 38/15, each azimuth gives 2 pi, terms with cos(Phi + const) integrate to 0),
the m4l integrals of S, B, qqZZ are power laws (analytic), and the interference needs
int L(m) r^0.7 cos(dphi(m)) dm, done with scipy.integrate.quad. Resulting cross sections
(see :func:`xsec`): sigma_S ~= 0.614 fb, sigma_B = 10 fb, sigma_I ~= -1.27 fb
(sigma_S / sigma_B ~= 6.1 %, sigma_I / sigma_S ~= -2.07), sigma_qqZZ = 12 fb.

Electroweak production (second POI)
-----------------------------------
An electroweak (VBF-like) qq -> qq (H* ->) ZZ component with its own signal strength mu_V, for the
(mu_ggF, mu_V) measurement of the off-shell Higgs analyses. Amplitudes (same r, s_i, h):

    A_VS = K_VS * r^P_VS * exp(i * PHI_VS) * s1 * s2
    A_VB = K_VB * r^P_VB * [C_VL * s1 * s2 + C_VT * h * exp(i * (Phi + PHASE_VT))]
    L_V(m) = (m / 220)^(-3)

with K_VS = 0.5, P_VS = 1, K_VB = 1, P_VB = 0, C_VL = 0.4, C_VT = 1.3, PHASE_VT = -0.4 and a constant
signal phase PHI_VS = 0.75 pi: the interference is mostly destructive (the Higgs exchange tames the
growth of longitudinal VV scattering) and the signal grows with m4l relative to the background.
The phase is not pi, so that |sqrt(mu_V) A_VS + A_VB|^2 vanishes for no mu_V: an exact
cancellation would make the morphing of learned ratios ill-conditioned where it happens. The
densities VS ~ L_V |A_VS|^2, VB ~ L_V |A_VB|^2, VSBI(mu_V) = mu_V VS + sqrt(mu_V) VI + VB,
VI = 2 L_V Re(A_VS conj(A_VB)) (signed), times bw(mZ1) bw(mZ2) f_pt f_y with f_pt = Gamma(2, 45 GeV)
(recoil against the tagging jets) and f_y = Normal(0, 0.8) (central four-lepton system). N0_vv is
fixed by sigma_VB = SIGMA_VB_FB = 3 fb; every integral is analytic (the m4l integrals are power
laws, the phase is constant): sigma_VS ~= 0.442 fb, sigma_VI ~= -0.410 fb. The electroweak processes
have no weight systematic (LES and lumi act on them as on every process). Their MC proposal for
m4l is (m / 220)^(-2). The data contain them only when a value of mu_V is given.

Systematic uncertainties (per-event factors; alpha in units of one standard deviation)
--------------------------------------------------------------------------------------
    LES      lepton energy scale: all lepton four-momenta scaled by (1 + LES_REL * alpha),
             LES_REL = 0.005; m4l, mZ1, mZ2, pt4l scale with it, angles and y4l are unchanged.
             The varied density is p(x / (1 + d)) (1 + d)^(-4) in the four scaled coordinates.
    kfactor  ggF (S, B, SBI, I) weights times 1 + alpha * KFACTOR_REL * (m4l - 220) / 780, KFACTOR_REL = 0.10
    qcdscale qqZZ weights times 1 + alpha * (QCD_REL0 + QCD_REL1 * (m4l - 220) / 780), 0.03 and 0.04
    lumi     normalisation only, yields times (1 + LUMI_REL)^alpha (log-normal), LUMI_REL = 0.017
The kfactor / qcdscale factors are linear in alpha; alpha must keep them non-negative on the
whole m4l range (|alpha| < 10 for kfactor, alpha > -1/0.07 for qcdscale).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.integrate import quad

# ----------------------------------------------------------------------------- constants
M4L_MIN = 220.0  # GeV
M4L_MAX = 1000.0  # GeV
MZ = 91.1876  # GeV
GAMMA_Z = 2.4952  # GeV
MZ_MIN = 76.0  # GeV
MZ_MAX = 106.0  # GeV
M_TOP = 172.5  # GeV
M_REF = 350.0  # GeV, reference mass of the amplitudes' power laws
M_LUMI = 220.0  # GeV, reference mass of the parton-luminosity power law
LUMI_POWER_GG = -4.0
LUMI_POWER_QQ = -4.5
DPHI_WIDTH = 40.0  # GeV
K_S = 1.0
K_B = 3.0
C_L = 0.6
C_T = 1.0
PHASE_T = 0.3  # rad, constant phase of the transverse background amplitude
QQ_LT = 0.3  # qqZZ longitudinal admixture
QQ_CS = 0.8  # qqZZ (1 + 0.8 cs^2)
PT_SHAPE = 2.0
PT_SCALE = {"gg": 15.0, "qq": 10.0, "vv": 45.0}  # GeV
Y_SIGMA = {"gg": 1.0, "qq": 1.6, "vv": 0.8}
SIGMA_B_FB = 10.0  # fb, fixes N0_gg
SIGMA_QQZZ_FB = 12.0  # fb, fixes N0_qq
PROPOSAL_POWER = -3.0  # MC proposal for m4l: (m / 220)^(-3) on [220, 1000] (gg, qq)

# electroweak (VBF-like) production qq -> qqZZ, with its own signal strength mu_V
V_LUMI_POWER = -3.0
V_K_S = 0.5
V_P_S = 1.0  # A_VS ~ r^1
V_K_B = 1.0
V_P_B = 0.0  # A_VB ~ r^0
V_C_L = 0.4
V_C_T = 1.3
V_PHASE_T = -0.4  # rad
V_SIGNAL_PHASE = 0.75 * np.pi  # mostly destructive: the Higgs exchange tames longitudinal VV scattering
V_PROPOSAL_POWER = -2.0  # MC proposal for m4l of the EW samples: (m / 220)^(-2)
SIGMA_VB_FB = 3.0  # fb, fixes N0_vv

LES_REL = 0.005
KFACTOR_REL = 0.10
QCD_REL0 = 0.03
QCD_REL1 = 0.04
LUMI_REL = 0.017

PROCESSES = ("S", "B", "SBI", "I", "qqZZ", "VS", "VB", "VSBI", "VI")
GG_PROCESSES = ("S", "B", "SBI", "I")
#: electroweak processes and the gg process of the same role (S, B, SBI at mu_V, I)
EW_PROCESSES = ("VS", "VB", "VSBI", "VI")
EW_ROLE = {"VS": "S", "VB": "B", "VSBI": "SBI", "VI": "I"}
FEATURES = (
    "m4l",
    "mZ1",
    "mZ2",
    "cos_theta_star",
    "cos_theta1",
    "cos_theta2",
    "phi",
    "phi1",
    "pt4l",
    "y4l",
)
#: the generator variables that scale with the lepton energy scale
LES_SCALED = ("m4l", "mZ1", "mZ2", "pt4l")
SYSTEMATICS = ("LES", "kfactor", "qcdscale", "lumi")

TWO_PI = 2.0 * np.pi


def check_process(process: str) -> str:
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; expected one of {PROCESSES}")
    return process


def family(process: str) -> str:
    """'gg' for S, B, SBI, I, 'qq' for qqZZ and 'vv' for VS, VB, VSBI, VI (the production
    mode: selects the amplitudes, the m4l proposal and the pt4l / y4l model)."""
    check_process(process)
    if process == "qqZZ":
        return "qq"
    return "vv" if process in EW_ROLE else "gg"


# ----------------------------------------------------------------------------- 1D pieces
def t_kfactor(m):
    """(m4l - 220) / 780: 0 at the lower, 1 at the upper end of the m4l range."""
    return (np.asarray(m, dtype=float) - M4L_MIN) / (M4L_MAX - M4L_MIN)


def delta_phi(m):
    """Signal phase dphi(m) = pi (0.8 + 0.2 tanh((m - 2 m_t) / 40 GeV))."""
    return np.pi * (0.8 + 0.2 * np.tanh((np.asarray(m, dtype=float) - 2.0 * M_TOP) / DPHI_WIDTH))


def parton_lumi(m, power=LUMI_POWER_GG):
    return (np.asarray(m, dtype=float) / M_LUMI) ** power


def _bw_cdf_unnorm(m):
    return np.arctan(2.0 * (np.asarray(m, dtype=float) - MZ) / GAMMA_Z) / np.pi


BW_NORM = float(_bw_cdf_unnorm(MZ_MAX) - _bw_cdf_unnorm(MZ_MIN))


def bw_pdf(m):
    """Truncated (to [76, 106] GeV) non-relativistic Breit-Wigner, normalised to 1."""
    m = np.asarray(m, dtype=float)
    val = (GAMMA_Z / TWO_PI) / ((m - MZ) ** 2 + 0.25 * GAMMA_Z**2) / BW_NORM
    return np.where((m >= MZ_MIN) & (m <= MZ_MAX), val, 0.0)


def bw_sample(u):
    """Inverse CDF of :func:`bw_pdf` for uniforms u in [0, 1)."""
    lo = _bw_cdf_unnorm(MZ_MIN)
    return MZ + 0.5 * GAMMA_Z * np.tan(np.pi * (lo + np.asarray(u) * BW_NORM))


def pt_logpdf(pt, fam):
    """log Gamma(shape 2, scale theta) density: pt exp(-pt / theta) / theta^2."""
    theta = PT_SCALE[fam]
    pt = np.asarray(pt, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.log(pt) - pt / theta - 2.0 * np.log(theta)
    return np.where(pt > 0, val, -np.inf)


def y_logpdf(y, fam):
    s = Y_SIGMA[fam]
    y = np.asarray(y, dtype=float)
    return -0.5 * (y / s) ** 2 - np.log(s * np.sqrt(TWO_PI))


# ----------------------------------------------------------------------------- proposal for m4l
_Q_A = 1.0 + PROPOSAL_POWER  # exponent + 1 = -2
Q_M_NORM = M_LUMI / _Q_A * ((M4L_MAX / M_LUMI) ** _Q_A - 1.0)  # int_220^1000 (m/220)^-3 dm


_V_Q_A = 1.0 + V_PROPOSAL_POWER
V_Q_M_NORM = M_LUMI / _V_Q_A * ((M4L_MAX / M_LUMI) ** _V_Q_A - 1.0)
#: {family: (power, 1 + power, normalisation)} of the m4l proposal
_PROPOSAL = {
    "gg": (PROPOSAL_POWER, _Q_A, Q_M_NORM),
    "qq": (PROPOSAL_POWER, _Q_A, Q_M_NORM),
    "vv": (V_PROPOSAL_POWER, _V_Q_A, V_Q_M_NORM),
}


def proposal_m_pdf(m, fam: str = "gg"):
    """m4l proposal density of the family's MC: (m / 220)^power on [220, 1000], normalised."""
    power, _a, norm = _PROPOSAL[fam]
    m = np.asarray(m, dtype=float)
    return np.where((m >= M4L_MIN) & (m <= M4L_MAX), (m / M_LUMI) ** power / norm, 0.0)


def proposal_m_sample(u, fam: str = "gg"):
    """Inverse CDF of :func:`proposal_m_pdf` for uniforms u in [0, 1)."""
    _power, a, norm = _PROPOSAL[fam]
    u = np.asarray(u, dtype=float)
    return M_LUMI * (1.0 + u * norm * a / M_LUMI) ** (1.0 / a)


# ----------------------------------------------------------------------------- amplitudes
def _sin(c):
    return np.sqrt(np.clip(1.0 - np.asarray(c, dtype=float) ** 2, 0.0, None))


def _h(c1, c2, cs):
    return 0.5 * np.sqrt((1.0 + c1**2) * (1.0 + c2**2) * (1.0 + 0.5 * cs**2))


def _amplitude_parts(cs, c1, c2, phi, amp_s, phase_s, amp_b, c_l, c_t, phase_t):
    """Real and imaginary parts of A_S = amp_s e^(i phase_s) s1 s2 and
    A_B = amp_b [c_l s1 s2 + c_t h e^(i (Phi + phase_t))], given their m4l-dependent moduli."""
    c1 = np.asarray(c1, dtype=float)
    c2 = np.asarray(c2, dtype=float)
    cs = np.asarray(cs, dtype=float)
    s12 = _sin(c1) * _sin(c2)
    a_s = amp_s * s12
    bt = amp_b * c_t * _h(c1, c2, cs)
    ph = np.asarray(phi, dtype=float) + phase_t
    return (
        a_s * np.cos(phase_s),
        a_s * np.sin(phase_s),
        amp_b * c_l * s12 + bt * np.cos(ph),
        bt * np.sin(ph),
    )


def amplitude_parts(m, cs, c1, c2, phi):
    """Real and imaginary parts of A_S and A_B (arrays)."""
    r = np.asarray(m, dtype=float) / M_REF
    return _amplitude_parts(cs, c1, c2, phi, K_S * r, delta_phi(m), K_B * r ** (-0.3), C_L, C_T, PHASE_T)


def ew_amplitude_parts(m, cs, c1, c2, phi):
    """Real and imaginary parts of A_VS and A_VB (electroweak production, arrays)."""
    r = np.asarray(m, dtype=float) / M_REF
    return _amplitude_parts(
        cs, c1, c2, phi, V_K_S * r**V_P_S, V_SIGNAL_PHASE, V_K_B * r**V_P_B, V_C_L, V_C_T, V_PHASE_T
    )


def _coherent(role: str, lum, parts, mu: float):
    """L |A|^2 of one role (S, B, I signed, SBI at ``mu``) from the amplitudes' parts."""
    sr, si, br, bi = parts
    if role == "S":
        return lum * (sr**2 + si**2)
    if role == "B":
        return lum * (br**2 + bi**2)
    if role == "I":
        return lum * 2.0 * (sr * br + si * bi)
    if mu < 0:
        raise ValueError("mu must be >= 0")
    rmu = np.sqrt(mu)
    return lum * ((rmu * sr + br) ** 2 + (rmu * si + bi) ** 2)


def matrix_element(process: str, m, cs, c1, c2, phi, mu: float = 1.0):
    """L(m) |A_c|^2 (without N0), the m4l+angular part of the density (signed for I, VI).

    For ``process == "SBI"`` the signal strength ``mu`` is used: L |sqrt(mu) A_S + A_B|^2; for
    ``"VSBI"`` it is the electroweak signal strength: L_V |sqrt(mu) A_VS + A_VB|^2.
    """
    check_process(process)
    m = np.asarray(m, dtype=float)
    if process in EW_ROLE:
        lum = parton_lumi(m, V_LUMI_POWER)
        return _coherent(EW_ROLE[process], lum, ew_amplitude_parts(m, cs, c1, c2, phi), mu)
    if process == "qqZZ":
        c1 = np.asarray(c1, dtype=float)
        c2 = np.asarray(c2, dtype=float)
        cs = np.asarray(cs, dtype=float)
        ang = (1 + c1**2) * (1 + c2**2) + QQ_LT * (1 - c1**2) * (1 - c2**2)
        ang = ang * (1 + QQ_CS * cs**2)
        return parton_lumi(m, LUMI_POWER_QQ) * ang * np.ones_like(np.asarray(phi, dtype=float))
    return _coherent(process, parton_lumi(m, LUMI_POWER_GG), amplitude_parts(m, cs, c1, c2, phi), mu)


def matrix_element_bound_m(process: str, m, mu: float = 1.0):
    """Upper bound on |matrix_element| over all angles at fixed m (triangle inequality)."""
    m = np.asarray(m, dtype=float)
    if process == "qqZZ":
        # bilinear in (c1^2, c2^2) -> max at corners = 4; (1 + 0.8 cs^2) <= 1.8
        return parton_lumi(m, LUMI_POWER_QQ) * 4.0 * (1.0 + QQ_CS)
    r = m / M_REF
    h_max = 0.5 * np.sqrt(2.0 * 2.0 * 1.5)
    if process in EW_ROLE:
        role = EW_ROLE[process]
        a_max = V_K_S * r**V_P_S
        b_max = V_K_B * r**V_P_B * (V_C_L + V_C_T * h_max)
        lum = parton_lumi(m, V_LUMI_POWER)
    else:
        role = process
        a_max = K_S * r
        b_max = K_B * r ** (-0.3) * (C_L + C_T * h_max)
        lum = parton_lumi(m, LUMI_POWER_GG)
    if role == "S":
        return lum * a_max**2
    if role == "B":
        return lum * b_max**2
    if role == "I":
        return lum * 2.0 * a_max * b_max
    return lum * (np.sqrt(mu) * a_max + b_max) ** 2


# ----------------------------------------------------------------------------- cross sections
def _power_integral(k: float, a: float = M4L_MIN, b: float = M4L_MAX) -> float:
    """int_a^b m^k dm."""
    if abs(k + 1.0) < 1e-14:
        return float(np.log(b / a))
    return float((b ** (k + 1.0) - a ** (k + 1.0)) / (k + 1.0))


def _m_integral_power(lumi_power: float, p: float, moment_t: bool) -> float:
    """int L(m) (m/M_REF)^p [t(m)] dm with L = (m/220)^lumi_power, analytic."""
    pref = M_LUMI ** (-lumi_power) * M_REF ** (-p)
    k = lumi_power + p
    if not moment_t:
        return pref * _power_integral(k)
    span = M4L_MAX - M4L_MIN
    return pref * (_power_integral(k + 1.0) - M4L_MIN * _power_integral(k)) / span


def _m_integral_interference(moment_t: bool) -> float:
    def f(m):
        val = parton_lumi(m) * (m / M_REF) ** 0.7 * np.cos(delta_phi(m))
        return val * t_kfactor(m) if moment_t else val

    val, _err = quad(f, M4L_MIN, M4L_MAX, limit=400, epsabs=0.0, epsrel=1e-12)
    return float(val)


def _m_integral_ew_interference(moment_t: bool) -> float:
    """int L_V(m) r^(p_S + p_B) cos(phase) [t(m)] dm: the phase is constant (analytic)."""
    return float(np.cos(V_SIGNAL_PHASE)) * _m_integral_power(V_LUMI_POWER, V_P_S + V_P_B, moment_t)


# angular integrals over (cs, c1, c2, Phi, Phi1), Phi1 included
_ANG_PHI = TWO_PI**2


def _ang_s(k_s):
    """Angular integral of |A_S|^2 / amp_s^2."""
    return k_s**2 * (4.0 / 3.0) ** 2 * 2.0 * _ANG_PHI


def _ang_b(k_b, c_l, c_t):
    """Angular integral of |A_B|^2 / amp_b^2 (the Phi-dependent cross term integrates to 0)."""
    return k_b**2 * (c_l**2 * (4.0 / 3.0) ** 2 * 2.0 + c_t**2 * 0.25 * (8.0 / 3.0) ** 2 * (7.0 / 3.0)) * _ANG_PHI


def _ang_i_cos(k_s, k_b, c_l):
    """Angular integral of 2 Re(A_S conj(A_B)) / (amp_s amp_b cos(phase_s)): only the longitudinal
    term survives the Phi integral."""
    return 2.0 * k_s * k_b * c_l * (4.0 / 3.0) ** 2 * 2.0 * _ANG_PHI


ANG_S = _ang_s(K_S)
ANG_B = _ang_b(K_B, C_L, C_T)
ANG_I_COS = _ang_i_cos(K_S, K_B, C_L)  # times cos(dphi(m))
ANG_QQ = ((8.0 / 3.0) ** 2 + QQ_LT * (4.0 / 3.0) ** 2) * (2.0 + QQ_CS * 2.0 / 3.0) * _ANG_PHI
ANG_VS = _ang_s(V_K_S)
ANG_VB = _ang_b(V_K_B, V_C_L, V_C_T)
ANG_VI_COS = _ang_i_cos(V_K_S, V_K_B, V_C_L)  # times cos(phase)


@cache
def _unnormalised_integrals() -> dict:
    """{process: (int |M|^2 dx, int t(m) |M|^2 dx)} without N0 (S, B, I, qqZZ, VS, VB, VI)."""
    out = {}
    for moment in (False, True):
        out.setdefault("S", []).append(ANG_S * _m_integral_power(LUMI_POWER_GG, 2.0, moment))
        out.setdefault("B", []).append(ANG_B * _m_integral_power(LUMI_POWER_GG, -0.6, moment))
        out.setdefault("I", []).append(ANG_I_COS * _m_integral_interference(moment))
        out.setdefault("qqZZ", []).append(ANG_QQ * _m_integral_power(LUMI_POWER_QQ, 0.0, moment))
        out.setdefault("VS", []).append(ANG_VS * _m_integral_power(V_LUMI_POWER, 2.0 * V_P_S, moment))
        out.setdefault("VB", []).append(ANG_VB * _m_integral_power(V_LUMI_POWER, 2.0 * V_P_B, moment))
        out.setdefault("VI", []).append(ANG_VI_COS * _m_integral_ew_interference(moment))
    return {k: tuple(v) for k, v in out.items()}


@cache
def norm_constants() -> dict:
    """N0 per family: {'gg': N0_gg, 'qq': N0_qq, 'vv': N0_vv} in fb."""
    ints = _unnormalised_integrals()
    return {
        "gg": SIGMA_B_FB / ints["B"][0],
        "qq": SIGMA_QQZZ_FB / ints["qqZZ"][0],
        "vv": SIGMA_VB_FB / ints["VB"][0],
    }


def _components(process: str, mu: float):
    """Coefficients of the S, B, I, qqZZ basis for a process."""
    if process == "SBI":
        return {"S": mu, "I": np.sqrt(mu), "B": 1.0}
    if process == "VSBI":
        return {"VS": mu, "VI": np.sqrt(mu), "VB": 1.0}
    return {process: 1.0}


def xsec_t_moment(process: str, mu: float = 1.0) -> float:
    """int t(m) dsigma in fb, t = (m4l - 220) / 780 (for the linear weight systematics)."""
    check_process(process)
    ints, n0 = _unnormalised_integrals(), norm_constants()
    return float(sum(c * n0[family(p)] * ints[p][1] for p, c in _components(process, mu).items()))


def xsec(process: str, mu: float = 1.0, kfactor: float = 0.0, qcdscale: float = 0.0) -> float:
    """Total cross section in fb of S, B, SBI (at signal strength ``mu``), I (signed), qqZZ, or
    of the electroweak VS, VB, VSBI (at signal strength ``mu``, i.e. mu_V), VI (signed).

    ``kfactor`` / ``qcdscale`` are nuisance values (in sigma units) of the m4l-dependent weight
    systematics; they only act on the gg resp. qq processes (the electroweak processes have
    none). Lumi is not included.
    """
    check_process(process)
    ints, n0 = _unnormalised_integrals(), norm_constants()
    total = sum(c * n0[family(p)] * ints[p][0] for p, c in _components(process, mu).items())
    tm = xsec_t_moment(process, mu)
    if family(process) == "gg":
        total += kfactor * KFACTOR_REL * tm
    elif family(process) == "qq":
        total += qcdscale * (QCD_REL0 * total + QCD_REL1 * tm)
    return float(total)


# ----------------------------------------------------------------------------- systematics
def kfactor_factor(m, alpha):
    return 1.0 + alpha * KFACTOR_REL * t_kfactor(m)


def qcdscale_factor(m, alpha):
    return 1.0 + alpha * (QCD_REL0 + QCD_REL1 * t_kfactor(m))


def check_nuisances(nuisances) -> dict:
    """Complete / validate a nuisance dict {LES, kfactor, qcdscale, lumi} (missing -> 0)."""
    nuis = {k: 0.0 for k in SYSTEMATICS}
    for key, val in dict(nuisances or {}).items():
        if key not in nuis:
            raise ValueError(f"unknown nuisance {key!r}; expected a subset of {SYSTEMATICS}")
        nuis[key] = float(val)
    if not abs(nuis["kfactor"]) * KFACTOR_REL < 1.0:
        raise ValueError("kfactor nuisance makes the gg density negative (need |alpha| < 10)")
    if (
        min(
            1.0 + nuis["qcdscale"] * QCD_REL0,
            1.0 + nuis["qcdscale"] * (QCD_REL0 + QCD_REL1),
        )
        <= 0
    ):
        raise ValueError("qcdscale nuisance makes the qqZZ density negative")
    if not 1.0 + nuis["LES"] * LES_REL > 0:
        raise ValueError("LES nuisance makes the lepton scale non-positive")
    return nuis
