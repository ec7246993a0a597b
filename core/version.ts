/** Library version, written into every artifact and checkpoint manifest. */
export const VERSION = "0.1.0";
