/* noisefloor: the public API in one header.
 *
 *   #include <noisefloor.h>      (cc ... $(pkg-config --cflags --libs noisefloor))
 *
 * Start with nf_engine.h (load a model, render sounds) and nf_train.h (train one);
 * nf_common.h has the status codes and error messages every call shares. */
#ifndef NOISEFLOOR_H
#define NOISEFLOOR_H

#include "nf_common.h"
#include "nf_rng.h"

/* Sound in and out. */
#include "nf_audio.h"
#include "nf_dataset.h"
#include "nf_stft.h"
#include "nf_repr.h"
#include "nf_image.h"
#include "nf_drums.h"
#include "nf_features.h"

/* The network, its training machinery and its files. */
#include "nf_nn.h"
#include "nf_unet.h"
#include "nf_classifier.h"
#include "nf_optim.h"
#include "nf_json.h"
#include "nf_safetensors.h"
#include "nf_checkpoint.h"

/* Diffusion, rendering and training. */
#include "nf_diffusion.h"
#include "nf_engine.h"
#include "nf_train.h"
#include "nf_bench.h"

#endif
