/** Builds the model a config names, from the dataset's item side. */
import type { TrainConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import type { Rng } from "../random.ts";
import { Bert4rec } from "./bert4rec.ts";
import { Difsr } from "./difsr.ts";
import { DuafMat } from "./duaf/duafmat.ts";
import { Fdsa } from "./fdsa.ts";
import { Gru4rec } from "./gru4rec.ts";
import { Lrurec } from "./lrurec.ts";
import { Iisan } from "./iisan.ts";
import { M3srec } from "./m3srec.ts";
import { Missrec } from "./missrec.ts";
import type { ItemSide } from "./item_side.ts";
import type { SequentialModel } from "./model.ts";
import { Nova } from "./nova.ts";
import { MostPopular } from "./pop.ts";
import { Sasrec } from "./sasrec.ts";
import { Unisrec } from "./unisrec.ts";
import { Tedrec } from "./tedrec.ts";

export function createModel(
  cfg: TrainConfig,
  items: ItemSide,
  rng: Rng,
  notice: (message: string) => void,
): SequentialModel {
  const numItems = items.numItems;
  if (cfg.outputEmbedding !== "tied" && cfg.model !== "sasrec") {
    throw new UsageError(
      `outputEmbedding=${cfg.outputEmbedding} applies to model=sasrec (now model=${cfg.model})`,
    );
  }
  switch (cfg.model) {
    case "sasrec":
      return new Sasrec({ ...cfg, numItems, maxLen: cfg.maxLen, loss: cfg.loss }, rng);
    case "gru4rec":
      return new Gru4rec({
        numItems,
        embeddingSize: cfg.hidden,
        hiddenSize: cfg.gruHidden,
        numLayers: cfg.gruLayers,
        dropout: cfg.gruDropout,
        loss: cfg.loss,
        negatives: cfg.negatives,
        gbceT: cfg.gbceT,
        negativeSharing: cfg.negativeSharing,
        ceChunkItems: cfg.ceChunkItems,
        ceProducts: cfg.ceProducts,
      }, rng);
    case "lrurec":
      if (!(cfg.lruRMin <= cfg.lruRMax)) {
        throw new UsageError(`lruRMin (${cfg.lruRMin}) must not exceed lruRMax (${cfg.lruRMax})`);
      }
      return new Lrurec({
        numItems,
        hidden: cfg.hidden,
        layers: cfg.layers,
        dropout: cfg.lruDropout,
        attnDropout: cfg.lruAttnDropout,
        rMin: cfg.lruRMin,
        rMax: cfg.lruRMax,
        loss: cfg.loss,
        negatives: cfg.negatives,
        gbceT: cfg.gbceT,
        negativeSharing: cfg.negativeSharing,
        ceChunkItems: cfg.ceChunkItems,
        ceProducts: cfg.ceProducts,
      }, rng);
    case "fdsa":
      if (!items.text) throw new UsageError("fdsa needs a text modality (the dataset has none)");
      return new Fdsa({ ...cfg, numItems, maxLen: cfg.maxLen, loss: cfg.loss }, rng, items.text);
    case "bert4rec":
      return new Bert4rec({
        ...cfg,
        numItems,
        maskRatio: cfg.bert4recMaskRatio,
        ftRatio: cfg.bert4recFtRatio,
      }, rng);
    case "pop":
      return new MostPopular({ numItems });
    case "nova":
      return new Nova(
        { ...cfg, numItems, attributes: cfg.novaAttributes, fusion: cfg.novaFusion },
        items,
        rng,
      );
    case "difsr":
      if (cfg.difsrFusion !== "sum" && cfg.trainMode === "window") {
        throw new UsageError(
          `difsr: difsrFusion=${cfg.difsrFusion} mixes every key's score before the causal ` +
            `mask, so window training would see future items: use trainMode=prefix or ` +
            `difsrFusion=sum`,
        );
      }
      return new Difsr(
        {
          ...cfg,
          numItems,
          attributes: cfg.difsrAttributes,
          attributeHidden: cfg.difsrAttributeHidden,
          fusion: cfg.difsrFusion,
          lambdas: cfg.difsrLambdas,
          freezeAttributes: cfg.difsrFreezeAttributes,
        },
        items,
        rng,
      );
    case "unisrec":
      if (!items.text) throw new UsageError("unisrec needs a text modality (the dataset has none)");
      if (cfg.unisrecStage === "pretrain" && cfg.trainMode === "window") {
        throw new UsageError("unisrec: unisrecStage=pretrain needs trainMode=prefix");
      }
      return new Unisrec(
        {
          ...cfg,
          numItems,
          stage: cfg.unisrecStage,
          mode: cfg.unisrecMode,
          experts: cfg.unisrecExperts,
          adaptorDropout: cfg.unisrecAdaptorDropout,
          noisyGating: cfg.unisrecNoisyGating,
          temperature: cfg.unisrecTemperature,
          lambda: cfg.unisrecLambda,
          itemDropRatio: cfg.unisrecItemDropRatio,
          itemDropCoefficient: cfg.unisrecItemDropCoefficient,
          fixEncoder: cfg.unisrecFixEncoder,
        },
        rng,
        items.text,
      );
    case "tedrec":
      if (cfg.trainMode === "window") {
        throw new UsageError(
          "tedrec: the frequency-domain filter mixes every position of a sequence, so window " +
            "training would see its targets: use trainMode=prefix",
        );
      }
      return new Tedrec(
        {
          ...cfg,
          numItems,
          temperature: cfg.tedrecTemperature,
          experts: cfg.tedrecExperts,
          adaptorDropout: cfg.tedrecAdaptorDropout,
          noisyGating: cfg.tedrecNoisyGating,
        },
        items,
        rng,
      );
    case "m3srec": {
      const model = new M3srec(
        {
          ...cfg,
          numItems,
          modalities: cfg.m3srecModalities,
          experts: cfg.m3srecExperts,
          adaptorDropout: cfg.m3srecAdaptorDropout,
          auxWeight: cfg.m3srecAuxWeight,
          temperature: cfg.m3srecTemperature,
        },
        items,
        rng,
      );
      for (const n of model.notices) notice(n);
      return model;
    }
    case "missrec": {
      if (cfg.trainMode === "window") {
        throw new UsageError("missrec: its decoder is not causal, so it needs trainMode=prefix");
      }
      if (cfg.loss !== "ce") {
        throw new UsageError("missrec: the fused modality logits train with loss=ce only");
      }
      const model = new Missrec(
        {
          ...cfg,
          numItems,
          stage: cfg.missrecStage,
          mode: cfg.missrecMode,
          modalities: cfg.missrecModalities,
          itemFusion: cfg.missrecItemFusion,
          temperature: cfg.missrecTemperature,
          lambda: cfg.missrecLambda,
          gamma: cfg.missrecGamma,
          interestRatio: cfg.missrecInterestRatio,
          kmeansIters: cfg.missrecKmeansIters,
          itemDropRatio: cfg.missrecItemDropRatio,
          itemDropCoefficient: cfg.missrecItemDropCoefficient,
          fixEncoder: cfg.missrecFixEncoder,
        },
        items,
        rng,
      );
      for (const n of model.notices) notice(n);
      return model;
    }
    case "iisan": {
      const model = new Iisan(
        {
          ...cfg,
          numItems,
          sideDim: cfg.iisanSideDim,
          adapterDown: cfg.iisanAdapterDown,
          adapterActivation: cfg.iisanAdapterActivation,
          gateTemperature: cfg.iisanGateTemperature,
        },
        items,
        rng,
      );
      for (const n of model.notices) notice(n);
      return model;
    }
    case "duafmat": {
      const model = new DuafMat(
        { ...cfg, numItems, maxLen: cfg.maxLen, loss: cfg.loss, duaf: cfg.duafmat },
        items,
        rng,
      );
      for (const n of model.notices) notice(n);
      return model;
    }
  }
}
