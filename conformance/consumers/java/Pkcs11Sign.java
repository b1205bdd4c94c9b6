// Signs through SunPKCS11's PKCS11 KeyStore and verifies with the certificate's public key using
// Java's own software providers (not the token). Also writes each signature for openssl to verify.
// Usage: java Pkcs11Sign.java CONFIG PIN OUTDIR alias:algorithm...
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.Security;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.util.Collections;

public class Pkcs11Sign {
    public static void main(String[] args) throws Exception {
        Provider p = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p);
        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, args[1].toCharArray());
        System.out.println("aliases: " + String.join(",", Collections.list(ks.aliases())));
        byte[] data = "signed by Java through SunPKCS11".getBytes("UTF-8");
        Files.write(Path.of(args[2], "java-data"), data);
        int failures = 0;
        for (int i = 3; i < args.length; i++) {
            String alias = args[i].split(":")[0], alg = args[i].split(":")[1];
            PrivateKey key = (PrivateKey) ks.getKey(alias, null);
            X509Certificate cert = (X509Certificate) ks.getCertificate(alias);
            if (key == null || cert == null) { System.out.println("FAIL " + alias + ": no key entry"); failures++; continue; }
            Signature s = Signature.getInstance(alg, p);
            if (alg.equals("RSASSA-PSS")) s.setParameter(new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1));
            s.initSign(key);
            s.update(data);
            byte[] sig = s.sign();
            Signature v = alg.equals("RSASSA-PSS") ? Signature.getInstance(alg, "SunRsaSign")
                : Signature.getInstance(alg, alg.endsWith("ECDSA") ? "SunEC" : "SunRsaSign");
            if (alg.equals("RSASSA-PSS")) v.setParameter(new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1));
            v.initVerify(cert.getPublicKey());
            v.update(data);
            boolean ok = v.verify(sig);
            System.out.println((ok ? "verified " : "FAIL ") + alias + " " + alg + " with " + v.getProvider().getName()
                + " (key class " + key.getClass().getSimpleName() + ", " + sig.length + " bytes)");
            if (!ok) failures++;
            Files.write(Path.of(args[2], "java-" + alias + ".sig"), sig);
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
