// A training run in a child process that the test can kill at a chosen moment:
//   node train-child.js '{"config": {...}, "killAfterCheckpoint": 6}'  -> SIGKILL once step-6 is on disk
//   node train-child.js '{"config": {...}, "killDuringWrite": 12}'     -> SIGKILL halfway through writing step-12
// The module object itself (an `import * as` namespace is read-only): patched to simulate a kill mid-write.
import fs = require('fs');
import { TrainConfig } from '../../src/tuning/config';
import { prepareInputs } from '../../src/tuning/setup';
import { Trainer } from '../../src/tuning/trainer';

interface ChildArgs {
  config: TrainConfig;
  resume?: boolean;
  killAfterCheckpoint?: number;
  killDuringWrite?: number;
}

/** Makes the process kill itself after the first chunk written to the given checkpoint's temp file. */
function killDuringWriteOf(step: number): void {
  const name = `step-${String(step).padStart(8, '0')}.safetensors.tmp-`;
  const fds = new Set<number>();
  const open = fs.openSync;
  const write = fs.writeSync;
  (fs as { openSync: typeof fs.openSync }).openSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (open as (...a: unknown[]) => number)(p, ...rest);
    if (String(p).includes(name)) fds.add(fd);
    return fd;
  }) as typeof fs.openSync;
  (fs as { writeSync: typeof fs.writeSync }).writeSync = ((fd: number, ...rest: unknown[]) => {
    const n = (write as (...a: unknown[]) => number)(fd, ...rest);
    if (fds.has(fd)) process.kill(process.pid, 'SIGKILL');
    return n;
  }) as typeof fs.writeSync;
}

async function main(args: ChildArgs): Promise<void> {
  if (args.killDuringWrite !== undefined) killDuringWriteOf(args.killDuringWrite);
  const inputs = await prepareInputs(args.config, () => {});
  const trainer = new Trainer(args.config, inputs, {
    resume: args.resume,
    log: () => {},
    progress: false,
    hooks: {
      afterCheckpoint: (step) => {
        if (step === args.killAfterCheckpoint) process.kill(process.pid, 'SIGKILL');
      },
    },
  });
  await trainer.run();
  trainer.dispose();
}

// Also loaded by `node --test` (it runs every file under test/): only act when given a job.
if (require.main === module && process.argv[2]) {
  main(JSON.parse(process.argv[2]) as ChildArgs).catch((e: Error) => {
    console.error(e.stack);
    process.exit(1);
  });
}
