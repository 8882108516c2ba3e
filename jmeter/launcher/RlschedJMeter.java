// Starts JMeter (NewDriver) after allowing JMeter's own types in its XStream instances.
//
// Debian's JMeter 2.13 runs with XStream 1.4.20, which refuses every type not allow-listed, so a
// plain `jmeter -n -t plan.jmx` loads nothing, writes no results and still exits 0. This launcher
// does only that one thing: it adds a wildcard type permission for org.apache.jmeter.** (and the few
// java.* types a plan needs) to SaveService's JMXSAVER and JTLSAVER, then calls NewDriver.main(args).
// JMeter 5.x does not need it. Compiled by `rlsched load run` when needed:
//   javac -cp /usr/share/jmeter/bin/ApacheJMeter.jar RlschedJMeter.java
import java.lang.reflect.Field;

public class RlschedJMeter {
    public static void main(String[] args) throws Exception {
        Class<?> driver = Class.forName("org.apache.jmeter.NewDriver");
        Field loaderField = driver.getDeclaredField("loader");
        loaderField.setAccessible(true);
        ClassLoader loader = (ClassLoader) loaderField.get(null);
        String home = System.getProperty("jmeter.home", "/usr/share/jmeter");
        Class<?> utils = loader.loadClass("org.apache.jmeter.util.JMeterUtils");
        utils.getMethod("setJMeterHome", String.class).invoke(null, home);
        utils.getMethod("loadJMeterProperties", String.class).invoke(null, home + "/bin/jmeter.properties");
        Class<?> saveService = loader.loadClass("org.apache.jmeter.save.SaveService");
        Class<?> typePermission = loader.loadClass("com.thoughtworks.xstream.security.TypePermission");
        Class<?> wildcard = loader.loadClass("com.thoughtworks.xstream.security.WildcardTypePermission");
        Object permission = wildcard.getConstructor(String[].class).newInstance((Object) new String[] {
            "org.apache.jmeter.**", "org.apache.jorphan.**", "java.lang.*", "java.util.*"});
        for (String name : new String[] {"JMXSAVER", "JTLSAVER"}) {
            Field f = saveService.getDeclaredField(name);
            f.setAccessible(true);
            Object xstream = f.get(null);
            xstream.getClass().getMethod("addPermission", typePermission).invoke(xstream, permission);
        }
        driver.getMethod("main", String[].class).invoke(null, (Object) args);
    }
}
