/**
 * The native backend on one kernel thread and on two, for tests of the C kernels' fused calls:
 * null twice (and `ignore`) where they are not built here, the reason logged once.
 */
import { NativeBackend } from "../../core/backends/native.ts";

export async function nativeOnOneAndTwoThreads(what: string): Promise<{
  one: NativeBackend | null;
  two: NativeBackend | null;
  ignore: boolean;
}> {
  // fusesGemmGelu: the C kernels are loaded (every build of them has each fused call).
  const open = async (threads: 1 | 2) => {
    const nb = await NativeBackend.open({ threads });
    return "unavailable" in nb || !nb.fusesGemmGelu ? null : nb;
  };
  const one = await open(1);
  const two = await open(2);
  const ignore = !one || !two;
  if (ignore) console.log(`${what} tests ignored: no C kernels here`);
  return { one, two, ignore };
}
