"""The baselines of the paper's comparison, as priors on the library's seam (docs/baselines.md).

Each registers a variant (``variant:`` in a model YAML) so that it trains with the same trainer,
is evaluated with the same metrics and is chosen from the same CLI as LMM-VAE:

* ``vae``: standard normal prior (:mod:`baselines.vae`);
* ``cvae``: networks conditioned on the design row, ``N(0, I)`` prior (:mod:`baselines.cvae`);
* ``gppvae``: full GP prior, object × view kernel, pseudo-minibatches (:mod:`baselines.gppvae`);
* ``svgpvae``: the same kernel through inducing points (:mod:`baselines.svgpvae`);
* ``lvae``: additive GP prior read from the formula (:mod:`baselines.lvae`).

GP priors read the experiment's design formula as a kernel (SPEC 5, :mod:`baselines.kernels`).
"""

from lmmvae.model.variants import Variant, register

from baselines.cvae import CVAEOptions, build_cvae, summarise_cvae
from baselines.gppvae import GPPVAEOptions, build_gppvae, summarise_gppvae
from baselines.lvae import LVAEOptions, build_lvae, summarise_lvae
from baselines.svgpvae import SVGPVAEOptions, build_svgpvae, summarise_svgpvae
from baselines.vae import VAEOptions, build_vae

register(Variant("vae", VAEOptions, build_vae, "VAE: standard normal prior"))
register(Variant("cvae", CVAEOptions, build_cvae, "CVAE (Sohn et al. 2015): networks conditioned on the design row",
                 gsnn=True, conditional=True, summarise=summarise_cvae))
register(Variant("gppvae", GPPVAEOptions, build_gppvae,
                 "GPPVAE (Casale et al. 2018): object × view GP prior, full-GP pseudo-minibatch objective",
                 summarise=summarise_gppvae))
register(Variant("svgpvae", SVGPVAEOptions, build_svgpvae,
                 "SVGP-VAE (Jazbec et al. 2021): object × view GP prior through inducing points",
                 summarise=summarise_svgpvae))
register(Variant("lvae", LVAEOptions, build_lvae,
                 "L-VAE (Ramchandran et al. 2021): additive GP prior from the formula, subject-decomposed bound",
                 summarise=summarise_lvae))
